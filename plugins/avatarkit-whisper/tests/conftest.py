"""Test speech, made offline: Piper's bundled 'joe' voice and espeak-ng (a second voice, so
nothing is tuned to one), with silences between sentences. Generated once per test run."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import pytest

from avatarkit.providers import AudioChunk

PIPER_LINES = (
    "What is the weather like in Madrid today?",
    "Can you recommend a good book about history?",
    "Thank you, that sounds wonderful.",
)
ESPEAK_LINES = (
    "What is the weather like in London today?",
    "Tell me about the moon.",
    "Stop talking please.",
)
RATE = 22050  # both voices speak at 22.05 kHz; the session resamples to 16 kHz


@dataclass(frozen=True)
class Speech:
    """Sentences as PCM16 mono at :data:`RATE`."""

    lines: tuple[str, ...]
    clips: tuple[bytes, ...]

    def seconds(self, i: int) -> float:
        return len(self.clips[i]) / 2 / RATE


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))


def noise_burst(seconds: float, *, level: float = 0.3, seed: int = 7) -> bytes:
    """A cough-like burst: white noise under a fast attack and a decaying envelope."""
    rng = random.Random(seed)
    n = round(seconds * RATE)
    out = bytearray()
    for i in range(n):
        envelope = min(1.0, i / (0.01 * RATE)) * (1 - i / n) ** 2
        value = int(32767 * level * envelope * rng.uniform(-1, 1))
        out += value.to_bytes(2, "little", signed=True)
    return bytes(out)


def chunks(*parts: bytes, ms: int = 20) -> list[AudioChunk]:
    data = b"".join(parts)
    step = round(RATE * ms / 1000) * 2
    return [AudioChunk(data[i : i + step], RATE) for i in range(0, len(data), step)]


def chunks16(*parts: bytes, ms: int = 20) -> list[AudioChunk]:
    """``parts`` resampled to 16 kHz (what the STT and VAD read) in ``ms`` chunks."""
    from avatarkit.audio import Resampler

    r = Resampler(RATE, 16000)
    data = r.process(AudioChunk(b"".join(parts), RATE)).data + r.flush().data
    step = round(16000 * ms / 1000) * 2
    return [AudioChunk(data[i : i + step], 16000) for i in range(0, len(data), step)]


async def play(items: Sequence[object]) -> AsyncIterator[AudioChunk]:
    """Yield audio; callables among ``items`` are awaited in between (to wait on the session)."""
    for item in items:
        if callable(item):
            await item()
        elif isinstance(item, bytes):
            for chunk in chunks(item):
                yield chunk
                await anyio.lowlevel.checkpoint()


def _piper(lines: Sequence[str]) -> tuple[bytes, ...]:
    from avatarkit.audio import Resampler
    from avatarkit_piper.tts import PiperTTS

    async def one(text: str) -> bytes:
        # no generator noise: the same speech every run (Piper samples noise by default)
        tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
        pieces = [c async for c in tts.synthesize(text)]
        data = b"".join(c.data for c in pieces)
        if pieces[0].sample_rate != RATE:
            r = Resampler(pieces[0].sample_rate, RATE)
            data = r.process(AudioChunk(data, pieces[0].sample_rate)).data + r.flush().data
        return data

    async def all_lines() -> tuple[bytes, ...]:
        return tuple([await one(line) for line in lines])

    return anyio.run(all_lines)


def _espeak(text: str) -> bytes:
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return w.readframes(w.getnframes())


class Kit:
    """The helpers above, for test modules (conftest cannot be imported by name)."""

    RATE = RATE
    silence = staticmethod(silence)
    noise_burst = staticmethod(noise_burst)
    chunks = staticmethod(chunks)
    chunks16 = staticmethod(chunks16)
    play = staticmethod(play)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


@pytest.fixture(scope="session")
def piper_speech() -> Speech:
    return Speech(PIPER_LINES, _piper(PIPER_LINES))


@pytest.fixture(scope="session")
def espeak_speech() -> Speech:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install espeak-ng (scripts/check does)")
    return Speech(ESPEAK_LINES, tuple(_espeak(line) for line in ESPEAK_LINES))
