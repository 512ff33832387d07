"""Options of the ``piper`` TTS, checked before any work starts (imports no piper).

The model reads the voice's ``.onnx.json`` while validating, so a missing or unreadable voice,
a missing config or a speaker the voice does not have is an error at configuration time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from avatarkit_piper.voices import VoiceInfo, VoiceOptionError, bundled_voice_path, read_voice_info

__all__ = ["PiperTTSOptions"]


class PiperTTSOptions(BaseModel):
    """Options of the ``piper`` TTS (YAML ``tts: {provider: piper, ...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: Path | None = Field(
        None,
        description="Path to a Piper .onnx voice with its .onnx.json beside it; "
        "default: the bundled en_US-joe-medium voice.",
    )
    voice_config: Path | None = Field(
        None, description="The voice's .onnx.json when it is not <voice>.json."
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

    @model_validator(mode="after")
    def _check_voice(self) -> Self:
        if self.voice is not None and self.voice.suffix != ".onnx":
            raise VoiceOptionError(
                f"voice must be a Piper .onnx model file, got {self.voice} "
                "(its .onnx.json must be beside it)",
                field="voice",
            )
        self._info = read_voice_info(self.voice or bundled_voice_path(), self.voice_config)
        self._speaker_id()  # raises for a speaker the voice does not have
        return self

    @property
    def info(self) -> VoiceInfo:
        """The voice's files, sample rate and speakers."""
        return self._info

    def speaker_id(self) -> int | None:
        """The numeric speaker id to synthesise with (None for single-speaker voices)."""
        return self._speaker_id()

    def _speaker_id(self) -> int | None:
        info = self._info
        if self.speaker is None:
            return None
        if info.num_speakers <= 1:
            raise VoiceOptionError(
                f"speaker {self.speaker!r} given but voice {info.name} has only one speaker; "
                "remove the speaker option",
                field="speaker",
            )
        if isinstance(self.speaker, int):
            return self._check_speaker_index(self.speaker)
        if self.speaker.isdigit() and self.speaker not in info.speaker_id_map:
            return self._check_speaker_index(int(self.speaker))
        if self.speaker not in info.speaker_id_map:
            known = ", ".join(sorted(info.speaker_id_map)[:10]) or "none named"
            raise VoiceOptionError(
                f"voice {info.name} has no speaker {self.speaker!r} (known: {known})",
                field="speaker",
            )
        return info.speaker_id_map[self.speaker]

    def _check_speaker_index(self, speaker: int) -> int:
        info = self._info
        if not 0 <= speaker < info.num_speakers:
            raise VoiceOptionError(
                f"speaker {speaker} is out of range: voice {info.name} has speakers "
                f"0..{info.num_speakers - 1}",
                field="speaker",
            )
        return speaker

    @property
    def length_scale(self) -> float:
        """Piper's phoneme length scale for :attr:`rate` (the voice's own scale / rate)."""
        return self._info.length_scale / self.rate
