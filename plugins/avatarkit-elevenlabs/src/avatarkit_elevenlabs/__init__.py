"""ElevenLabs text-to-speech for avatarkit (see :mod:`avatarkit_elevenlabs.tts`)."""

__all__: list[str] = []
__version__ = "0.2.0"
