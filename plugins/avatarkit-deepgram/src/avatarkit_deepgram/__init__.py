"""Deepgram live speech-to-text for avatarkit.

The provider lives in :mod:`avatarkit_deepgram.stt`; importing this package imports no network
client.
"""

__version__ = "0.2.0"
