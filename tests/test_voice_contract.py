"""The STT/VAD contract: registration, the fakes, and the conformance checks catching faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from avatarkit.hookspecs import hookimpl
from avatarkit.plugins import ProviderRegistry
from avatarkit.providers import (
    STT,
    VAD,
    AudioChunk,
    SpeechEvent,
    Transcript,
    stt_sample_rate,
    stt_streams,
    vad_sample_rate,
)
from avatarkit.testing import FakeSTT, FakeVAD, check_stt, check_vad, registered, tone

RATE = 16000


def speech(*pattern: float, rate: int = RATE) -> list[AudioChunk]:
    """Alternating silence/tone stretches (seconds), starting with silence."""
    chunks = []
    for i, seconds in enumerate(pattern):
        data = tone(seconds, rate) if i % 2 else bytes(2 * round(seconds * rate))
        chunks.append(AudioChunk(data, rate))
    return chunks


class _Plugin:
    __name__ = "voice-test-plugin"

    @hookimpl
    def register_providers(self, registry: ProviderRegistry) -> None:
        registry.stt("mine", FakeSTT, description="test stt")
        registry.vad("mine", "avatarkit.testing:FakeVAD")


def test_registry_holds_stt_and_vad() -> None:
    with registered(_Plugin()) as registry:
        assert "mine" in registry.names("stt")
        assert "mine" in registry.names("vad")
        assert isinstance(registry.get("stt", "mine").create(), FakeSTT)
        assert isinstance(registry.get("vad", "mine").create(), FakeVAD)
        kinds = [spec.kind for spec in registry]
        assert kinds.index("stt") > kinds.index("renderer")


def test_missing_offline_provider_names_its_package() -> None:
    from avatarkit.errors import ProviderNotFound

    with registered() as registry, pytest.raises(ProviderNotFound, match="avatarkit-whisper"):
        registry.get("stt", "whisper")


def test_protocols_and_attributes() -> None:
    assert isinstance(FakeSTT(), STT)
    assert isinstance(FakeVAD(), VAD)
    assert stt_sample_rate(FakeSTT(sample_rate=24000)) == 24000
    assert stt_sample_rate(object()) == 16000
    assert vad_sample_rate(FakeVAD(sample_rate=8000)) == 8000
    assert stt_streams(FakeSTT(streaming=True))
    assert not stt_streams(FakeSTT())
    assert not stt_streams(type("S", (), {"streaming": "yes"})())  # only a real True counts


async def test_fake_vad_passes_and_finds_each_utterance() -> None:
    events = await check_vad(FakeVAD(), speech(0.3, 0.5, 0.6, 0.4, 0.5), utterances=2)
    assert [e.kind for e in events] == ["speech_started", "speech_ended"] * 2
    assert events[0].at == pytest.approx(0.3, abs=0.021)
    assert events[1].at == pytest.approx(0.8, abs=0.021)
    assert events[2].at == pytest.approx(1.4, abs=0.021)


async def test_fake_vad_closes_speech_at_end_of_audio() -> None:
    events = await check_vad(FakeVAD(), speech(0.2, 0.5), utterances=1)
    assert events[-1] == SpeechEvent("speech_ended", pytest.approx(0.7, abs=0.021))


async def test_fake_stt_whole_utterances_pass() -> None:
    stt = FakeSTT(["hello there friend"])
    text = await check_stt(stt, speech(0.2, 0.6, 0.2), expect=["hello", "Friend!"])
    assert text == "hello there friend"


async def test_fake_stt_streaming_passes_with_interims() -> None:
    stt = FakeSTT(["one two three", "four five"], streaming=True)
    seen: list[Transcript] = []

    async def feed() -> AsyncIterator[AudioChunk]:
        for chunk in speech(0.2, 1.2, 0.5, 0.8, 0.5):
            for i in range(0, len(chunk.data), 640):
                yield AudioChunk(chunk.data[i : i + 640], RATE)

    async with aclosing(feed()) as source, aclosing(stt.transcribe(source)) as stream:
        seen.extend([item async for item in stream])
    finals = [t for t in seen if t.kind == "final"]
    assert [t.text for t in finals] == ["one two three", "four five"]
    assert all(t.end_of_turn for t in finals)
    interims = [t.text for t in seen if t.kind == "interim"]
    assert interims[:3] == ["one", "one two", "one two three"]
    assert [t.kind for t in seen if t.kind.startswith("speech")] == [
        "speech_started",
        "speech_ended",
    ] * 2
    # and the conformance check agrees
    await check_stt(FakeSTT(["a b"], streaming=True), speech(0.2, 0.5, 0.5), expect=["b"])


async def test_check_stt_resamples_stereo_input() -> None:
    stereo = AudioChunk(tone(0.5, 44100) * 1, 44100)
    data = b"".join(stereo.data[i : i + 2] * 2 for i in range(0, len(stereo.data), 2))
    stt = FakeSTT(["ok"])
    await check_stt(stt, [AudioChunk(data, 44100, 2)])
    assert stt.calls[0] == pytest.approx(0.5, abs=0.01)


class _StopsEarly:
    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        async for _ in audio:
            break
        yield Transcript("final", "hi")


class _NoFinal:
    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript("interim", "hi")


class _OutOfRange:
    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript("final", "hi", start=0.0, end=99.0)


class _RaisesWhenAbandoned(FakeSTT):
    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        try:
            async for item in super().transcribe(audio):
                yield item
        except BaseException:
            raise RuntimeError("abandoned badly") from None


@pytest.mark.parametrize(
    ("stt", "message"),
    [
        (_StopsEarly(), "read its audio to the end"),
        (_NoFinal(), "at least one final"),
        (_OutOfRange(), "outside"),
        (FakeSTT(["hello"]), "lacks"),
        (_RaisesWhenAbandoned(), "abandoned midway"),
    ],
)
async def test_check_stt_catches_faults(stt: object, message: str) -> None:
    expect = ["goodbye"] if message == "lacks" else []
    with pytest.raises(AssertionError, match=message):
        await check_stt(stt, speech(0.2, 0.4, 0.2), expect=expect)


class _Unclosed:
    async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[SpeechEvent]:
        async for _ in audio:
            pass
        yield SpeechEvent("speech_started", 0.1)


class _Backwards:
    async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[SpeechEvent]:
        async for _ in audio:
            pass
        yield SpeechEvent("speech_started", 0.3)
        yield SpeechEvent("speech_ended", 0.2)


class _Twice:
    async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[SpeechEvent]:
        async for _ in audio:
            pass
        yield SpeechEvent("speech_started", 0.1)
        yield SpeechEvent("speech_started", 0.2)


@pytest.mark.parametrize(
    ("vad", "utterances", "message"),
    [
        (_Unclosed(), None, "never closed"),
        (_Backwards(), None, "back in time"),
        (_Twice(), None, "alternate"),
        (FakeVAD(), 3, "expected 3"),
        (FakeVAD(sample_rate=8000, min_silence=5.0), 2, "expected 2"),
    ],
)
async def test_check_vad_catches_faults(vad: object, utterances: int | None, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        await check_vad(vad, speech(0.2, 0.4, 0.6, 0.4, 0.2), utterances=utterances)


async def test_fakes_reject_audio_at_the_wrong_rate() -> None:
    async def feed() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(tone(0.1, 8000), 8000)

    async with aclosing(feed()) as source, aclosing(FakeVAD().detect(source)) as events:
        with pytest.raises(AssertionError, match="16000 Hz"):
            await events.__anext__()
