"""Entry point of avatarkit-piper: registers the ``piper`` TTS (imports no piper/onnxruntime)."""

from __future__ import annotations

import avatarkit
from avatarkit_piper.options import PiperTTSOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.tts(
        "piper",
        "avatarkit_piper.tts:PiperTTS",
        options=PiperTTSOptions,
        description="Offline neural TTS (Piper); bundled en_US 'joe' voice, no network.",
    )
