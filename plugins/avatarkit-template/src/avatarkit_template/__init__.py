"""A copy-me minimal avatarkit plugin."""

__version__ = "0.1.0"
