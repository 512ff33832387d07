"""avatarkit renderer that draws a talking face to MP4 and WAV files."""

__version__ = "0.1.0"
