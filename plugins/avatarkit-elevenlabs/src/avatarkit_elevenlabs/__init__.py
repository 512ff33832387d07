"""ElevenLabs text-to-speech for avatarkit (see :mod:`avatarkit_elevenlabs.tts`)."""

__all__: list[str] = []
