"""LITE mode's audio: PCM16 mono at 24 kHz, in ``agent.speak`` messages of about a second.

The session engine already resamples to ``renderer.sample_rate`` (24000); :class:`To24k` covers a
renderer driven directly with audio at another rate or with several channels.
"""

from __future__ import annotations

import base64

from avatarkit.audio import Resampler, to_mono
from avatarkit.providers import AudioChunk

__all__ = ["BYTES_PER_SECOND", "MAX_MESSAGE_BYTES", "SAMPLE_RATE", "To24k", "speak_payloads"]

SAMPLE_RATE = 24000
BYTES_PER_SECOND = SAMPLE_RATE * 2
#: LiveAvatar's limit for one message; we stay well below it (1 s is 64 kB of base64).
MAX_MESSAGE_BYTES = 1_000_000


class To24k:
    """Converts a stream of chunks to 24 kHz mono PCM16 bytes (avatarkit's soxr resampler)."""

    def __init__(self) -> None:
        self._resampler: Resampler | None = None

    def convert(self, chunk: AudioChunk) -> bytes:
        chunk = to_mono(chunk)
        if chunk.sample_rate == SAMPLE_RATE:
            return self.flush() + chunk.data
        if self._resampler is None or self._resampler.in_rate != chunk.sample_rate:
            tail = self.flush()
            self._resampler = Resampler(chunk.sample_rate, SAMPLE_RATE)
            return tail + self._resampler.process(chunk).data
        return self._resampler.process(chunk).data

    def flush(self) -> bytes:
        """What the resampler still holds (at the end of an utterance or a rate change)."""
        if self._resampler is None:
            return b""
        tail = self._resampler.flush().data
        self._resampler = None
        return tail


def speak_payloads(pcm: bytes, max_seconds: float) -> list[str]:
    """``pcm`` cut into base64 payloads of at most ``max_seconds`` (whole samples)."""
    step = max(2, int(max_seconds * SAMPLE_RATE) * 2)
    step = min(step, (MAX_MESSAGE_BYTES * 3 // 4 - 1024) // 2 * 2)
    return [base64.b64encode(pcm[i : i + step]).decode("ascii") for i in range(0, len(pcm), step)]
