"""Entry point of avatarkit-elevenlabs: registers its providers (imports no client library)."""

from __future__ import annotations

import avatarkit
from avatarkit_elevenlabs.options import ElevenLabsHTTPOptions, ElevenLabsOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.tts(
        "elevenlabs",
        "avatarkit_elevenlabs.tts:ElevenLabsTTS",
        options=ElevenLabsOptions,
        description="ElevenLabs stream-input WebSocket: text in as written, word timings out.",
    )
    registry.tts(
        "elevenlabs-http",
        "avatarkit_elevenlabs.http_tts:ElevenLabsHTTPTTS",
        options=ElevenLabsHTTPOptions,
        description="ElevenLabs HTTP streaming endpoint, one request per sentence.",
    )
