"""Entry point of avatarkit-deepgram: registers its STT (imports no network client)."""

from __future__ import annotations

import avatarkit
from avatarkit_deepgram.options import DeepgramSTTOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.stt(
        "deepgram",
        "avatarkit_deepgram.stt:DeepgramSTT",
        options=DeepgramSTTOptions,
        description="Deepgram live transcription (WebSocket): interim results, endpointing.",
    )
