"""Anthropic Claude LLM for avatarkit."""

__version__ = "0.1.0"
