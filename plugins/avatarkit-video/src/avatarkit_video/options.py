"""Options of the ``video`` renderer (pydantic only, so plugin discovery stays light)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AAC_SAMPLE_RATES", "Box", "VideoRendererOptions"]

#: Sample rates the AAC encoder accepts.
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

#: ``[x, y, width, height]`` in pixels of the portrait image.
Box = tuple[
    Annotated[int, Field(ge=0)],
    Annotated[int, Field(ge=0)],
    Annotated[int, Field(gt=0)],
    Annotated[int, Field(gt=0)],
]


class VideoRendererOptions(BaseModel):
    """Options of the ``video`` renderer."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Field(
        Path("avatarkit-output"), description="Folder for the MP4, WAV and WebVTT files."
    )
    name: str | None = Field(
        None,
        description="File name stem (``NAME.mp4`` ...); default ``avatar-YYYYmmdd-HHMMSS`` "
        "(``-2``, ``-3`` ... added when taken). A name whose files exist is an error unless "
        "``overwrite`` is set.",
    )
    overwrite: bool = Field(
        False, description="Replace the files of an earlier recording with the same name."
    )
    width: int = Field(512, ge=16, le=3840, description="Frame width in pixels (even).")
    height: int = Field(512, ge=16, le=3840, description="Frame height in pixels (even).")
    fps: int = Field(25, ge=1, le=60, description="Frames per second.")
    sample_rate: int = Field(24000, description="Audio sample rate of the files, in Hz.")
    realtime: bool = Field(
        False,
        description="Render at the pace of speech, idle frames filling the wall-clock gaps "
        "between utterances (for live use); otherwise as fast as possible.",
    )
    pause: float = Field(
        0.3,
        ge=0,
        le=10,
        description="Seconds of idle face before each utterance and at the end "
        "(when not realtime).",
    )
    portrait: Path | None = Field(
        None, description="A PNG or JPEG portrait to animate instead of the drawn face."
    )
    mouth_box: Box | None = Field(
        None, description="Where the mouth is in the portrait: [x, y, width, height] in pixels."
    )
    eye_boxes: list[Box] = Field(
        default_factory=list,
        description="Where the eyes are in the portrait, to make them blink (optional).",
    )
    subtitles: bool = Field(True, description="Also mux the transcript into the MP4 (mov_text).")
    crf: int = Field(23, ge=0, le=51, description="H.264 quality: lower is better and bigger.")
    seed: int = Field(0, description="Seed of the blink and gaze timing (deterministic output).")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even for H.264 (try {value + 1})")
        return value

    @field_validator("sample_rate")
    @classmethod
    def _aac_rate(cls, value: int) -> int:
        if value not in AAC_SAMPLE_RATES:
            allowed = ", ".join(map(str, AAC_SAMPLE_RATES))
            raise ValueError(f"AAC needs one of {allowed}")
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or "/" in value or "\\" in value or value in (".", "..")
        ):
            raise ValueError("must be a plain file name stem without folders")
        return value

    @model_validator(mode="after")
    def _portrait_needs_mouth(self) -> VideoRendererOptions:
        if self.portrait is not None and self.mouth_box is None:
            raise ValueError("portrait needs mouth_box: [x, y, width, height] of the mouth")
        if self.portrait is None and (self.mouth_box is not None or self.eye_boxes):
            raise ValueError("mouth_box and eye_boxes only apply with a portrait")
        if self.width * self.height > 3840 * 2160:
            raise ValueError(f"{self.width}x{self.height} is larger than 3840x2160")
        return self
