"""Cartesia text-to-speech for avatarkit (see :mod:`avatarkit_cartesia.tts`)."""

__all__: list[str] = []
__version__ = "0.2.0"
