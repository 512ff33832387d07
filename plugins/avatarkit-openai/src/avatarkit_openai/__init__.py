"""OpenAI (and OpenAI-compatible) LLM and TTS for avatarkit."""

__version__ = "0.1.0"
