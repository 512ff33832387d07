"""The conformance helpers and pytest fixtures avatarkit ships for plugin authors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest

from avatarkit.builtins.console import ConsoleRenderer
from avatarkit.builtins.scripted import ScriptedLLM
from avatarkit.plugins import ProviderRegistry
from avatarkit.providers import AudioChunk, Message, WordTiming
from avatarkit.testing import (
    FakeAudioRenderer,
    FakeIncrementalTTS,
    FakeLLM,
    FakeProvidersPlugin,
    FakeTextRenderer,
    FakeTTS,
    check_llm,
    check_renderer,
    check_tts,
    tone,
)


async def test_fakes_and_builtins_pass(
    fake_llm: FakeLLM,
    fake_tts: FakeTTS,
    fake_text_renderer: FakeTextRenderer,
    fake_audio_renderer: FakeAudioRenderer,
) -> None:
    assert await check_llm(fake_llm) == "Hello there. How can I help you today?"
    assert fake_llm.cancelled == 1  # the abandoned second stream
    chunks = await check_tts(fake_tts)
    assert all(c.sample_rate == 16000 for c in chunks)
    await check_renderer(fake_text_renderer)
    assert fake_text_renderer.interrupts == 1
    assert fake_text_renderer.closed >= 2
    await check_renderer(fake_audio_renderer)
    await check_renderer(FakeAudioRenderer(realtime=True))
    await check_renderer(FakeTextRenderer(seconds_per_char=0.01))
    await check_renderer(ConsoleRenderer(words_per_minute=600))
    assert await check_llm(ScriptedLLM(replies=["Scripted."])) == "Scripted."


class BytesLLM:
    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Any]:
        yield b"not text"


class OddTTS:
    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(b"\x00\x01\x02", 16000)


class RateChangingTTS:
    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(b"\x00\x00" * 10, 16000)
        yield AudioChunk(b"\x00\x00" * 10, 24000)


class DeafRenderer:
    """Ignores interrupt(): its speak_text only returns when the utterance is over."""

    async def start(self) -> None: ...
    async def interrupt(self) -> None: ...
    async def close(self) -> None: ...

    async def speak_text(self, text: str) -> None:
        await anyio.sleep(len(text) / 100)


class FragileClose(FakeTextRenderer):
    async def close(self) -> None:
        await super().close()
        if self.closed > 1:
            raise RuntimeError("already closed")


class OverclaimingRenderer(FakeTextRenderer):
    def spoken_fraction(self) -> float | None:
        return 1.5


async def test_problems_are_caught() -> None:
    with pytest.raises(AssertionError, match="stream yielded bytes, not str"):
        await check_llm(BytesLLM())
    with pytest.raises(AssertionError, match="not whole 16-bit frames"):
        await check_tts(OddTTS())
    with pytest.raises(AssertionError, match="change sample rate"):
        await check_tts(RateChangingTTS())
    with pytest.raises(AssertionError, match=r"speak_text did not return within 0.2s"):
        await check_renderer(DeafRenderer(), patience=0.2)
    with pytest.raises(AssertionError, match="close\\(\\) is not idempotent"):
        await check_renderer(FragileClose())
    with pytest.raises(AssertionError, match="not a share from 0 to 1"):
        await check_renderer(OverclaimingRenderer())
    with pytest.raises(AssertionError, match="neither async speak_text nor async speak"):
        await check_renderer(object())


def test_provider_registry_fixture(
    provider_registry: ProviderRegistry, fake_providers: FakeProvidersPlugin
) -> None:
    assert {"fake", "scripted"} <= set(provider_registry.names("llm"))
    assert {"fake-text", "fake-audio", "console"} <= set(provider_registry.names("renderer"))
    llm = provider_registry.get("llm", "fake").create(replies=["Hi."])
    assert fake_providers.of(FakeLLM) == [llm]


@pytest.mark.parametrize("text", ["hello there. ", "a  bc\tdef ", "x"])
@pytest.mark.parametrize(("rate", "ms_per_char"), [(16000, 10.0), (24000, 7.5), (8000, 1.0)])
async def test_both_fake_tts_speak_ms_per_char_of_the_same_tone(
    text: str, rate: int, ms_per_char: float
) -> None:
    """FakeTTS (a sentence) and FakeIncrementalTTS (word by word) share one voice: the audio of
    a word is the same tone, ms_per_char per character (its trailing space included)."""
    sentence = FakeTTS(sample_rate=rate, ms_per_char=ms_per_char)
    whole = b"".join([c.data async for c in sentence.synthesize(text)])  # read to the end
    assert whole == tone(len(text) * ms_per_char / 1000, rate)

    incremental = FakeIncrementalTTS(sample_rate=rate, ms_per_char=ms_per_char)
    async with incremental.open_stream() as stream:
        await stream.push(text)
        await stream.end()
        items = [item async for item in stream]
    audio = [i.data for i in items if isinstance(i, AudioChunk)]
    words = text.split()
    assert [w.word for w in items if isinstance(w, WordTiming)] == words
    pieces = re.findall(r"\S+\s*", text)
    assert audio == [tone(len(p) * ms_per_char / 1000, rate) for p in pieces]
    for fake in (sentence, incremental):
        await fake.start()
        await fake.close()
        assert (fake.started, fake.closed) == (1, 1)


async def test_cancel_once_cancels_when_the_state_is_reached_not_before() -> None:
    from avatarkit.testing import cancel_once

    reached = anyio.Event()
    progress: list[str] = []

    async def work() -> None:
        progress.append("started")
        await anyio.sleep(0.05)
        reached.set()
        await anyio.sleep(30)
        progress.append("never")

    assert await cancel_once(reached.is_set, work)
    assert progress == ["started"]

    async def quick() -> None:
        progress.append("done")

    # Work that ends by itself was not cut short: the caller's assertion then fails.
    assert not await cancel_once(lambda: False, quick)
    assert progress[-1] == "done"
