"""PCM helpers and streaming resampling."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from avatarkit.audio import Resampler, resample_stream, rms, silence, to_mono
from avatarkit.providers import AudioChunk
from avatarkit.testing import tone


async def chunks_of(data: bytes, rate: int, size: int) -> AsyncIterator[AudioChunk]:
    for i in range(0, len(data), size * 2):
        yield AudioChunk(data[i : i + size * 2], rate)


@pytest.mark.parametrize(("src", "dst"), [(22050, 24000), (24000, 16000), (16000, 48000)])
async def test_resampling_keeps_duration_and_pitch(src: int, dst: int) -> None:
    audio = tone(1.0, src, frequency=440.0)
    out = [c async for c in resample_stream(chunks_of(audio, src, 441), dst)]
    assert {c.sample_rate for c in out} == {dst}
    data = b"".join(c.data for c in out)
    assert len(data) // 2 == pytest.approx(dst, abs=2)  # one second, to the sample
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * dst / len(samples)
    assert peak_hz == pytest.approx(440.0, abs=2.0)  # no aliasing, no pitch shift
    assert rms(data) == pytest.approx(rms(audio), rel=0.02)


async def test_matching_rate_passes_chunks_through_untouched() -> None:
    audio = tone(0.1, 16000)
    source = [c async for c in chunks_of(audio, 16000, 160)]
    out = [c async for c in resample_stream(chunks_of(audio, 16000, 160), 16000)]
    assert out == source


async def test_rate_change_mid_stream_starts_a_new_resampler() -> None:
    async def mixed() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(tone(0.5, 22050), 22050)
        yield AudioChunk(tone(0.5, 16000), 16000)

    out = [c async for c in resample_stream(mixed(), 24000)]
    total = sum(c.frames for c in out)
    assert total == pytest.approx(24000, abs=4)


def test_resampler_flush_returns_the_tail() -> None:
    resampler = Resampler(16000, 8000)
    first = resampler.process(AudioChunk(tone(0.1, 16000), 16000))
    tail = resampler.flush()
    assert first.frames + tail.frames == 800


def test_helpers() -> None:
    assert rms(silence(0.1, 16000).data) == 0.0
    assert silence(0.5, 8000).duration == 0.5
    stereo = AudioChunk(np.array([1000, 3000] * 10, dtype="<i2").tobytes(), 8000, 2)
    mono = to_mono(stereo)
    assert mono.channels == 1
    assert mono.frames == 10
    assert abs(int(np.frombuffer(mono.data, dtype="<i2")[0]) - 2000) <= 1
