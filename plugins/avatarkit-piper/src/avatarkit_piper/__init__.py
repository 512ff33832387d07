"""Offline neural text-to-speech for avatarkit with Piper."""

__version__ = "0.2.0"
