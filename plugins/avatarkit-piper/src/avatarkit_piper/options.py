"""Options of the ``piper`` TTS, checked before any work starts (imports no piper).

The model reads the voice's ``.onnx.json`` while validating, so a missing or unreadable voice,
a missing config or a speaker the voice does not have is an error at configuration time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from avatarkit_piper.voices import (
    VoiceInfo,
    bundled_voice_path,
    check_voice_config,
    check_voice_model,
    read_voice_info,
    speaker_index,
)

__all__ = ["PiperTTSOptions"]


class PiperTTSOptions(BaseModel):
    """Options of the ``piper`` TTS (YAML ``tts: {provider: piper, ...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # voice_config comes first so voice's check can use it (pydantic validates in field order)
    voice_config: Path | None = Field(
        None, description="The voice's .onnx.json when it is not <voice>.json."
    )
    voice: Path | None = Field(
        None,
        validate_default=True,
        description="Path to a Piper .onnx voice with its .onnx.json beside it; "
        "default: the bundled en_US-joe-medium voice.",
    )
    rate: float = Field(
        1.0,
        ge=0.25,
        le=4.0,
        description="Speaking rate multiplier: 1.0 is the voice's own pace, 1.5 is 50% faster.",
    )
    sentence_silence: float = Field(
        0.0, ge=0.0, le=10.0, description="Seconds of silence added after each sentence."
    )
    speaker: int | str | None = Field(
        None, description="Speaker id or name, for multi-speaker voices only."
    )
    noise_scale: float | None = Field(
        None, ge=0.0, le=2.0, description="Generator noise (voice default, usually 0.667)."
    )
    noise_w_scale: float | None = Field(
        None, ge=0.0, le=2.0, description="Phoneme-duration noise (voice default, usually 0.8)."
    )
    volume: float = Field(1.0, gt=0.0, le=1.0, description="Output level, 1.0 = full scale.")
    split_phrases: bool = Field(
        True,
        description="Synthesise long sentences clause by clause (at , ; :) so audio starts "
        "sooner and cancellation is prompter.",
    )
    threads: int | None = Field(
        None, ge=1, le=64, description="ONNX Runtime threads (default: one per core)."
    )

    _info: VoiceInfo = PrivateAttr()

    # Checks are field validators so each error carries the option's name (pydantic's loc),
    # which the YAML loader turns into the file:line of that option.

    @field_validator("voice_config")
    @classmethod
    def _check_voice_config(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_voice_config(value)
        return value

    @field_validator("voice")
    @classmethod
    def _check_voice(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            check_voice_model(value)
        if "voice_config" in info.data:  # absent when voice_config itself was wrong
            read_voice_info(value or bundled_voice_path(), info.data["voice_config"])
        return value

    @field_validator("speaker")
    @classmethod
    def _check_speaker(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        if value is not None and "voice" in info.data and "voice_config" in info.data:
            voice = read_voice_info(
                info.data["voice"] or bundled_voice_path(), info.data["voice_config"]
            )
            speaker_index(voice, value)
        return value

    @model_validator(mode="after")
    def _read_voice(self) -> Self:
        self._info = read_voice_info(self.voice or bundled_voice_path(), self.voice_config)
        return self

    @property
    def info(self) -> VoiceInfo:
        """The voice's files, sample rate and speakers."""
        return self._info

    def speaker_id(self) -> int | None:
        """The numeric speaker id to synthesise with (None for single-speaker voices)."""
        return speaker_index(self._info, self.speaker)

    @property
    def length_scale(self) -> float:
        """Piper's phoneme length scale for :attr:`rate` (the voice's own scale / rate)."""
        return self._info.length_scale / self.rate
