"""Anthropic Claude LLM for avatarkit.

The provider lives in :mod:`avatarkit_anthropic.llm`; importing this package does not import the
``anthropic`` SDK.
"""

__version__ = "0.2.0"
