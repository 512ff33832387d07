"""PCM helpers and resampling.

Audio in avatarkit is 16-bit little-endian PCM (:class:`~avatarkit.providers.AudioChunk`).
Resampling uses libsoxr (the ``soxr`` package): a streaming, band-limited resampler of broadcast
quality that keeps its filter state between chunks, so chunk boundaries add no clicks. Naive
decimation or linear interpolation would alias and is not used.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING

from avatarkit.providers import AudioChunk

if TYPE_CHECKING:
    import numpy as np

# numpy and soxr are imported where they are used, so `import avatarkit` stays light.

__all__ = [
    "Resampler",
    "float_to_pcm16",
    "pcm16_to_float",
    "resample_stream",
    "rms",
    "silence",
    "to_mono",
]


def pcm16_to_float(data: bytes, channels: int = 1) -> np.ndarray:
    """PCM16 bytes to float32 samples in [-1, 1], shaped (frames, channels)."""
    import numpy as np

    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels)


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to PCM16 bytes (clipped)."""
    import numpy as np

    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def rms(data: bytes) -> float:
    """Root-mean-square level of PCM16 audio, 0.0 to 1.0."""
    import numpy as np

    if len(data) < 2:
        return 0.0
    samples = pcm16_to_float(data[: len(data) - len(data) % 2])
    return float(np.sqrt(np.mean(np.square(samples))))


def silence(duration: float, sample_rate: int, channels: int = 1) -> AudioChunk:
    """A chunk of digital silence."""
    return AudioChunk(bytes(2 * channels * round(duration * sample_rate)), sample_rate, channels)


def to_mono(chunk: AudioChunk) -> AudioChunk:
    """Average the channels of ``chunk``."""
    if chunk.channels == 1:
        return chunk
    mixed = pcm16_to_float(chunk.data, chunk.channels).mean(axis=1)
    return AudioChunk(float_to_pcm16(mixed), chunk.sample_rate, 1)


class Resampler:
    """Streaming resampler from one rate to another; feed chunks in order, then :meth:`flush`."""

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1, quality: str = "HQ") -> None:
        import soxr

        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._stream = soxr.ResampleStream(
            in_rate, out_rate, channels, dtype="int16", quality=quality
        )

    def process(self, chunk: AudioChunk) -> AudioChunk:
        """Resample one chunk (may return fewer frames than expected: soxr buffers a little)."""
        import numpy as np

        samples = np.frombuffer(chunk.data, dtype="<i2").reshape(-1, self.channels)
        if self.channels == 1:
            samples = samples[:, 0]
        out = self._stream.resample_chunk(samples, last=False)
        return AudioChunk(out.astype("<i2").tobytes(), self.out_rate, self.channels)

    def flush(self) -> AudioChunk:
        """The samples soxr still holds at the end of the stream."""
        import numpy as np

        empty = np.zeros((0, self.channels) if self.channels > 1 else 0, dtype=np.int16)
        out = self._stream.resample_chunk(empty, last=True)
        return AudioChunk(out.astype("<i2").tobytes(), self.out_rate, self.channels)


async def resample_stream(
    audio: AsyncIterator[AudioChunk], rate: int | None, *, mono: bool = False
) -> AsyncIterator[AudioChunk]:
    """Yield ``audio`` at ``rate`` (unchanged when ``rate`` is None or already matches).

    Follows rate or channel changes mid-stream by starting a new resampler.
    """
    try:
        async with aclosing(_resampled(audio, rate, mono=mono)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        aclose = getattr(audio, "aclose", None)
        if aclose is not None:
            await aclose()  # an abandoned source is closed now, not when garbage collected


async def _resampled(
    audio: AsyncIterator[AudioChunk], rate: int | None, *, mono: bool
) -> AsyncGenerator[AudioChunk, None]:
    resampler: Resampler | None = None
    async for chunk in audio:
        if mono:
            chunk = to_mono(chunk)
        if rate is None or chunk.sample_rate == rate:
            if resampler is not None:
                tail = resampler.flush()
                resampler = None
                if tail.data:
                    yield tail
            yield chunk
            continue
        if resampler is None or (resampler.in_rate, resampler.channels) != (
            chunk.sample_rate,
            chunk.channels,
        ):
            if resampler is not None:
                tail = resampler.flush()
                if tail.data:
                    yield tail
            resampler = Resampler(chunk.sample_rate, rate, chunk.channels)
        out = resampler.process(chunk)
        if out.data:
            yield out
    if resampler is not None:
        tail = resampler.flush()
        if tail.data:
            yield tail
