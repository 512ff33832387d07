"""Helpers shared by the video renderer's tests: test audio, and reading a recording back."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import anyio
import av
import numpy as np
import pytest

from avatarkit.providers import AudioChunk
from avatarkit.testing import tone

RATE = 16000
FPS = 25
SIZE = 128


def speech(seconds: float, rate: int = RATE, *, level: float = 0.5) -> np.ndarray:
    """A loud test tone (the avatarkit.testing tone) as int16 samples."""
    return np.frombuffer(tone(seconds, rate, level=level), dtype="<i2").copy()


async def chunks(
    pcm: np.ndarray, rate: int = RATE, *, chunk_ms: float = 40, delay: float = 0.0
) -> AsyncIterator[AudioChunk]:
    """``pcm`` as a stream of AudioChunks, like a TTS yields them."""
    step = max(1, round(rate * chunk_ms / 1000))
    for start in range(0, pcm.size, step):
        if delay:
            await anyio.sleep(delay)
        yield AudioChunk(pcm[start : start + step].astype("<i2").tobytes(), rate)


@dataclass
class Recording:
    """What a finished (or crashed) MP4 holds, decoded with PyAV."""

    codecs: dict[str, str]
    width: int
    height: int
    fps: Fraction | None
    frames: list[np.ndarray]  # RGB
    frame_times: list[float]
    audio: np.ndarray  # float32 mono as decoded
    audio_rate: int
    audio_start: float  # media time of audio[0]
    subtitles: list[tuple[float, float, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def audio_seconds(self) -> float:
        return self.audio.size / self.audio_rate

    def dark_pixels(self, box: tuple[int, int, int, int], threshold: int = 45) -> np.ndarray:
        """Per frame, how many pixels in ``box`` are darker than ``threshold`` (an open mouth)."""
        x, y, w, h = box
        out = []
        for image in self.frames:
            region = image[y : y + h, x : x + w].astype(np.int32)
            luma = (region[..., 0] * 299 + region[..., 1] * 587 + region[..., 2] * 114) // 1000
            out.append(int(np.count_nonzero(luma < threshold)))
        return np.array(out)


def read_recording(path: Path) -> Recording:
    with av.open(str(path)) as container:
        codecs = {s.type: s.codec_context.name for s in container.streams}
        video = container.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        fps = video.guessed_rate  # average_rate counts the stretched first frame, see media.py
        metadata = dict(container.metadata)
        subtitles = []
        if container.streams.subtitles:
            for packet in container.demux(container.streams.subtitles[0]):
                data = bytes(packet)
                if packet.pts is None or len(data) <= 2:
                    continue
                size = int.from_bytes(data[:2], "big")
                start = float(packet.pts * packet.time_base)
                subtitles.append(
                    (
                        start,
                        start + float(packet.duration * packet.time_base),
                        data[2 : 2 + size].decode(),
                    )
                )
    with av.open(str(path)) as container:
        frames, times = [], []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
    with av.open(str(path)) as container:
        decoded = list(container.decode(audio=0))
        rate = container.streams.audio[0].codec_context.sample_rate
    parts = [f.to_ndarray().reshape(-1) for f in decoded]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    audio_start = float(decoded[0].time) if decoded else 0.0
    return Recording(
        codecs, width, height, fps, frames, times, audio, rate, audio_start, subtitles, metadata
    )


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


class Media:
    """The helpers above, handed to tests by the ``media`` fixture (importlib mode: tests cannot
    import conftest)."""

    RATE = RATE
    FPS = FPS
    SIZE = SIZE
    speech = staticmethod(speech)
    chunks = staticmethod(chunks)
    read = staticmethod(read_recording)
    read_wav = staticmethod(read_wav)
    #: Where the mouth and eyes are in the ``portrait`` fixture: [x, y, w, h].
    MOUTH_BOX = (126, 227, 48, 12)
    EYE_BOXES = ((106, 172, 31, 21), (163, 172, 31, 21))


@pytest.fixture
def media() -> type[Media]:
    return Media


@pytest.fixture
def options(tmp_path: Path) -> Callable[..., dict[str, object]]:
    """Small, fast renderer options writing to tmp_path; override any with keywords."""

    def make(**overrides: object) -> dict[str, object]:
        base: dict[str, object] = {
            "output_dir": tmp_path / "out",
            "name": "take",
            "width": SIZE,
            "height": SIZE,
            "fps": FPS,
            "sample_rate": RATE,
        }
        return base | overrides

    return make


@pytest.fixture
def portrait(tmp_path: Path) -> Path:
    """A 300x400 PNG portrait (the drawn face, letterboxed) whose mouth is at MOUTH_BOX."""
    from avatarkit_video.animation import Pose
    from avatarkit_video.face import DrawnFace

    face = DrawnFace(300, 400)
    image = face.draw(Pose())
    path = tmp_path / "portrait.png"
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 300, 400, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path
