"""LITE mode's audio: PCM16 mono at 24 kHz, in ``agent.speak`` messages of about a second.

The session engine already resamples to ``renderer.sample_rate`` (24000); :class:`To24k` covers a
renderer driven directly with audio at another rate or with several channels (soxr, streaming).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from avatarkit.providers import AudioChunk

__all__ = ["BYTES_PER_SECOND", "MAX_MESSAGE_BYTES", "SAMPLE_RATE", "To24k", "speak_payloads"]

SAMPLE_RATE = 24000
BYTES_PER_SECOND = SAMPLE_RATE * 2
#: LiveAvatar's limit for one message; we stay well below it (1 s is 64 kB of base64).
MAX_MESSAGE_BYTES = 1_000_000


class To24k:
    """Converts a stream of chunks to 24 kHz mono PCM16 bytes, keeping resampler state."""

    def __init__(self) -> None:
        self._rate: int | None = None
        self._stream: Any = None

    def convert(self, chunk: AudioChunk) -> bytes:
        data = chunk.data[: len(chunk.data) - len(chunk.data) % (2 * chunk.channels)]
        if chunk.channels > 1:
            frames = np.frombuffer(data, dtype="<i2").reshape(-1, chunk.channels)
            data = frames.mean(axis=1).astype("<i2").tobytes()
        if chunk.sample_rate == SAMPLE_RATE and self._stream is None:
            return data
        import soxr  # type: ignore[import-untyped]

        if self._stream is None or self._rate != chunk.sample_rate:
            flushed = self.flush()
            self._rate = chunk.sample_rate
            self._stream = soxr.ResampleStream(chunk.sample_rate, SAMPLE_RATE, 1, dtype="int16")
        else:
            flushed = b""
        samples = np.frombuffer(data, dtype="<i2")
        out = self._stream.resample_chunk(samples)
        return flushed + np.asarray(out, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        """The resampler's tail at the end of an utterance."""
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        self._stream = None
        self._rate = None
        return np.asarray(out, dtype="<i2").tobytes()


def speak_payloads(pcm: bytes, max_seconds: float) -> list[str]:
    """``pcm`` cut into base64 payloads of at most ``max_seconds`` (whole samples)."""
    step = max(2, int(max_seconds * SAMPLE_RATE) * 2)
    step = min(step, (MAX_MESSAGE_BYTES * 3 // 4 - 1024) // 2 * 2)
    return [base64.b64encode(pcm[i : i + step]).decode("ascii") for i in range(0, len(pcm), step)]
