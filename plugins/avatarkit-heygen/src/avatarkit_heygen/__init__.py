"""HeyGen streaming-avatar and LiveAvatar renderers for avatarkit."""

__version__ = "0.1.0"
