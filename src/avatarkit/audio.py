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
    "RateConverter",
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
        return AudioChunk(out.astype("<i2", copy=False).tobytes(), self.out_rate, self.channels)

    def flush(self) -> AudioChunk:
        """The samples soxr still holds at the end of the stream."""
        import numpy as np

        empty = np.zeros((0, self.channels) if self.channels > 1 else 0, dtype=np.int16)
        out = self._stream.resample_chunk(empty, last=True)
        return AudioChunk(out.astype("<i2", copy=False).tobytes(), self.out_rate, self.channels)


class RateConverter:
    """Brings a stream of chunks to one ``rate``, synchronously (no generator to step
    through per chunk). Chunks already at ``rate`` (or any chunk, when ``rate`` is ``None``)
    pass through as they are, with no copy and no call into soxr.

    A new resampler starts at each change of input format: reusing one (``clear()``) was
    measured no cheaper than making one (about 30 µs either way) and does not reproduce a
    fresh one's output exactly.
    """

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._active: Resampler | None = None  # holds unflushed samples

    def passes(self, chunk: AudioChunk) -> bool:
        """Whether ``chunk`` goes through unchanged (nothing pending from another format)."""
        return (self.rate is None or chunk.sample_rate == self.rate) and self._active is None

    def convert(self, chunk: AudioChunk) -> list[AudioChunk]:
        """``chunk`` at ``rate``, preceded by the tail of a resampler it replaces; empty
        chunks are left out."""
        if self.rate is None or chunk.sample_rate == self.rate:
            return [*self.finish(), chunk]
        key = (chunk.sample_rate, chunk.channels)
        out: list[AudioChunk] = []
        active = self._active
        if active is not None and (active.in_rate, active.channels) != key:
            out += self.finish()
            active = None
        if active is None:
            active = self._active = Resampler(chunk.sample_rate, self.rate, chunk.channels)
        converted = active.process(chunk)
        if converted.data:
            out.append(converted)
        return out

    def finish(self) -> list[AudioChunk]:
        """The samples still held for the stream so far (empty when none); the next chunk
        starts a new stream."""
        active, self._active = self._active, None
        if active is None:
            return []
        tail = active.flush()
        return [tail] if tail.data else []


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
    converter = RateConverter(rate)
    async for chunk in audio:
        for out in converter.convert(to_mono(chunk) if mono else chunk):
            yield out
    for out in converter.finish():
        yield out
