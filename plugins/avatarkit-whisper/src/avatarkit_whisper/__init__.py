"""Offline voice input for avatarkit: Whisper STT and Silero VAD, no network at run time."""
