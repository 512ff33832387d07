"""avatarkit renderer that draws a talking face to MP4 and WAV files.

``from avatarkit_video import VideoRenderer`` works, but imports PyAV and numpy only when asked
for, so plugin discovery (which imports :mod:`avatarkit_video.plugin`) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["VideoRenderer", "VideoRendererOptions", "__version__"]

if TYPE_CHECKING:
    from avatarkit_video.options import VideoRendererOptions
    from avatarkit_video.renderer import VideoRenderer


def __getattr__(name: str) -> Any:
    if name == "VideoRenderer":
        from avatarkit_video.renderer import VideoRenderer

        return VideoRenderer
    if name == "VideoRendererOptions":
        from avatarkit_video.options import VideoRendererOptions

        return VideoRendererOptions
    raise AttributeError(f"module 'avatarkit_video' has no attribute {name!r}")
