"""avatarkit-shout: an avatar that shouts every sentence."""

__version__ = "0.2.0"
