"""A copy-me minimal avatarkit plugin."""

__version__ = "0.2.0"
