"""Entry point of avatarkit-cartesia: registers its provider (imports no client library)."""

from __future__ import annotations

import avatarkit
from avatarkit_cartesia.options import CartesiaOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.tts(
        "cartesia",
        "avatarkit_cartesia.tts:CartesiaTTS",
        options=CartesiaOptions,
        description="Cartesia TTS WebSocket: continuations per turn, word timestamps out.",
    )
