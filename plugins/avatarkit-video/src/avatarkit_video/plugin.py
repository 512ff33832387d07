"""Entry point of avatarkit-video: registers the ``video`` renderer (imports no PyAV or numpy)."""

from __future__ import annotations

import avatarkit
from avatarkit_video.options import VideoRendererOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.renderer(
        "video",
        "avatarkit_video.renderer:VideoRenderer",
        options=VideoRendererOptions,
        description="Draws a talking face to MP4 (H.264 + AAC), WAV and WebVTT files; offline.",
    )
