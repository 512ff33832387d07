"""Entry point of avatarkit-whisper: registers STT ``whisper`` and VAD ``silero``.

Imports neither faster-whisper nor onnxruntime: they load when a voice session starts.
"""

from __future__ import annotations

import avatarkit
from avatarkit_whisper.options import SileroVADOptions, WhisperSTTOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.stt(
        "whisper",
        "avatarkit_whisper.stt:WhisperSTT",
        options=WhisperSTTOptions,
        description="Offline Whisper STT (faster-whisper); bundled tiny.en, no network.",
    )
    registry.vad(
        "silero",
        "avatarkit_whisper.vad:SileroVAD",
        options=SileroVADOptions,
        description="Offline Silero VAD on onnxruntime (no torch).",
    )
