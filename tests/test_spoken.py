"""History and events record only what was said, however a sentence is cut (asyncio and trio).

Each test cuts a turn one way and checks :func:`truth.check_truth`: every sentence's recorded
words fit inside what the renderer actually said, and ``SentenceEnded`` agrees with history.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from tests.truth import check_truth

from avatarkit import AudioChunk, AvatarSession, Message, ProviderError, ProviderTimeout
from avatarkit._spoken import spoken_prefix
from avatarkit.events import Event, SentenceEnded, TextDelta, TurnMetrics
from avatarkit.session import Timeouts
from avatarkit.testing import (
    FakeAudioRenderer,
    FakeLLM,
    FakeTextRenderer,
    FakeTTS,
    Utterance,
    wait_until,
)

REPLY = "First sentence is long enough to cut. Second one follows here. Third and last!"
FIRST = "First sentence is long enough to cut."
BOTH = ["text", "audio"]
MS = 10.0  # FakeTTS milliseconds of audio per character
# For the tests that cut FIRST while it plays: it then lasts 3.7 s, so the cut lands mid-sentence
# however late a loaded machine runs the test's trigger (at MS it lasts 0.37 s, and a cut that
# came after its end would rightly record all of it).
SLOW = 100.0


class Boom(Exception):
    pass


def make(
    route: str,
    *,
    llm: Any = None,
    tts: Any = None,
    renderer: Any = None,
    slow: bool = True,
    ms: float = MS,
    **kwargs: Any,
) -> tuple[AvatarSession, Any, list[Event]]:
    """A session on ``route``; ``ms`` is the milliseconds a character takes to say."""
    if renderer is None:
        renderer = (
            FakeTextRenderer(seconds_per_char=ms / 1000 if slow else 0.0)
            if route == "text"
            else FakeAudioRenderer(realtime=slow)
        )
    if route == "audio" and tts is None:
        tts = FakeTTS(ms_per_char=ms)
    session = AvatarSession(llm=llm or FakeLLM([REPLY]), tts=tts, renderer=renderer, **kwargs)
    assert session.route == route
    events: list[Event] = []
    session.on_event(events.append)
    return session, renderer, events


def said_some(renderer: Any, chunks: int = 3) -> bool:
    if isinstance(renderer, FakeTextRenderer):
        return bool(renderer.spoken)
    return bool(renderer.utterances) and len(renderer.utterances[0].chunks) >= chunks


def assistant(history: Sequence[Message]) -> list[str]:
    return [m.content for m in history if m.role == "assistant"]


# -- the renderer fails -----------------------------------------------------------------------


class MuteTextRenderer(FakeTextRenderer):
    async def speak_text(self, text: str) -> None:
        self.spoken.append(text)
        self.fractions.append(0.0)
        raise Boom("lost the connection before a word")


class MuteAudioRenderer(FakeAudioRenderer):
    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        self.utterances.append(Utterance())
        raise Boom("lost the connection before a word")


@pytest.mark.parametrize("route", BOTH)
async def test_a_renderer_that_raises_before_a_word_records_nothing(route: str) -> None:
    renderer = MuteTextRenderer() if route == "text" else MuteAudioRenderer()
    session, renderer, events = make(route, renderer=renderer)
    async with session:
        with pytest.raises(ProviderError):
            await session.send("hi")
    assert assistant(session.history) == []
    ended = [e for e in events if isinstance(e, SentenceEnded)]
    assert [(e.interrupted, e.spoken) for e in ended] == [(True, "")]
    check_truth(session.history, events, renderer, ms_per_char=MS)


# -- the caller's cancel scope ------------------------------------------------------------------


@pytest.mark.parametrize("route", BOTH)
async def test_cancelling_the_caller_mid_sentence_records_only_what_was_said(route: str) -> None:
    session, renderer, events = make(route, ms=SLOW)
    async with session:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cut() -> None:
                    await wait_until(lambda: said_some(renderer))
                    await anyio.sleep(0.05)
                    scope.cancel()

                tg.start_soon(cut)
                await session.send("hi")
        assert scope.cancelled_caught
    assert FIRST not in assistant(session.history)
    check_truth(session.history, events, renderer, ms_per_char=SLOW)
    assert any(isinstance(e, SentenceEnded) and e.interrupted for e in events)


# -- the LLM fails while a sentence plays ------------------------------------------------------


class FailingLaterLLM(FakeLLM):
    """Streams the first sentence, waits for ``go``, then fails."""

    def __init__(self) -> None:
        super().__init__([FIRST + " And then"])
        self.go = anyio.Event()

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        for token in self.replies[0][:-2]:
            yield token
        await self.go.wait()
        raise Boom("the LLM dropped the connection")


@pytest.mark.parametrize("route", BOTH)
async def test_an_llm_failure_while_a_sentence_plays_records_only_what_was_said(
    route: str,
) -> None:
    llm = FailingLaterLLM()
    session, renderer, events = make(route, llm=llm, ms=SLOW)
    async with session, anyio.create_task_group() as tg:

        async def fail_soon() -> None:
            await wait_until(lambda: said_some(renderer))
            llm.go.set()

        tg.start_soon(fail_soon)
        with pytest.raises(ProviderError) as info:
            await session.send("hi")
    assert info.value.provider == "FailingLaterLLM"
    assert FIRST not in assistant(session.history)
    check_truth(session.history, events, renderer, ms_per_char=SLOW)


# -- the TTS fails ----------------------------------------------------------------------------


class OnceFailingTTS(FakeTTS):
    """``mode``: raise (before any audio), hang (no first chunk), mid (after two chunks)."""

    def __init__(self, mode: str) -> None:
        super().__init__(ms_per_char=MS)
        self.mode: str | None = mode

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        mode, self.mode = self.mode, None
        if mode == "raise":
            raise Boom("tts refused")
        if mode == "hang":
            await anyio.sleep(3600)
        async with aclosing(super().synthesize(text)) as chunks:
            i = 0
            async for chunk in chunks:
                if mode == "mid" and i == 2:
                    raise Boom("tts dropped mid-sentence")
                yield chunk
                i += 1


@pytest.mark.parametrize("mode", ["raise", "hang"])
async def test_a_sentence_with_no_audio_is_not_recorded(mode: str) -> None:
    session, renderer, events = make(
        "audio", tts=OnceFailingTTS(mode), slow=False, timeouts=Timeouts(tts_first_chunk=0.05)
    )
    async with session:
        with pytest.raises(ProviderTimeout if mode == "hang" else ProviderError):
            await session.send("hi")
    assert assistant(session.history) == []
    check_truth(session.history, events, renderer, ms_per_char=MS)


async def test_a_tts_failure_mid_sentence_records_only_the_audio_played() -> None:
    session, renderer, events = make("audio", tts=OnceFailingTTS("mid"), slow=False)
    async with session:
        with pytest.raises(ProviderError):
            await session.send("hi")
    assert FIRST not in assistant(session.history)
    check_truth(session.history, events, renderer, ms_per_char=MS)


# -- interrupt while the TTS is still producing the sentence ------------------------------------


async def test_interrupt_while_the_tts_is_still_producing_measures_against_the_whole() -> None:
    # Twice real time: FIRST's 3.7 s of audio take 1.85 s to produce, so the TTS is still
    # producing it when the interrupt lands, however late.
    tts = FakeTTS(ms_per_char=SLOW, chunk_delay=0.01)
    session, renderer, events = make("audio", tts=tts)
    async with session, anyio.create_task_group() as tg:
        tg.start_soon(session.send, "hi")
        await wait_until(lambda: said_some(renderer, 4))
        await session.interrupt()
    assert tts.completed == 0  # it was still producing
    assert FIRST not in assistant(session.history)
    check_truth(session.history, events, renderer, ms_per_char=SLOW)


# -- an async caption() --------------------------------------------------------------------------


class CaptionGate:
    gate: anyio.Event
    waiting = False

    async def caption(self, text: str) -> None:
        self.waiting = True
        await self.gate.wait()


class GatedTextRenderer(CaptionGate, FakeTextRenderer):
    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()


class GatedAudioRenderer(CaptionGate, FakeAudioRenderer):
    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()


@pytest.mark.parametrize("route", BOTH)
async def test_nothing_is_said_after_an_interrupt_that_arrives_during_caption(
    route: str,
) -> None:
    renderer = GatedTextRenderer() if route == "text" else GatedAudioRenderer()
    session, renderer, events = make(route, renderer=renderer)
    async with session, anyio.create_task_group() as tg:
        tg.start_soon(session.send, "hi")
        await wait_until(lambda: renderer.waiting)
        tg.start_soon(session.interrupt)
        await wait_until(lambda: renderer.interrupts == 1)
        renderer.gate.set()
    said = renderer.spoken if route == "text" else renderer.utterances
    assert said == []
    assert assistant(session.history) == []
    check_truth(session.history, events, renderer, ms_per_char=MS)


# -- an empty first delta ------------------------------------------------------------------------


class EmptyFirstLLM(FakeLLM):
    """Yields "" at once, then the reply after ``wait`` seconds (forever if None)."""

    def __init__(self, wait: float | None) -> None:
        super().__init__(["Hello there."])
        self.wait = wait
        self.waited = 0.0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        started = time.perf_counter()
        yield ""
        await anyio.sleep(3600 if self.wait is None else self.wait)
        self.waited = time.perf_counter() - started
        yield "Hello there."


async def test_an_empty_first_delta_does_not_disarm_the_first_token_timeout() -> None:
    session, _, _ = make("text", llm=EmptyFirstLLM(None), timeouts=Timeouts(first_token=0.05))
    with anyio.fail_after(10):
        async with session:
            with pytest.raises(ProviderTimeout, match="no first token"):
                await session.send("hi")


async def test_an_empty_first_delta_is_not_the_first_token() -> None:
    llm = EmptyFirstLLM(0.05)
    session, _, events = make("text", llm=llm, slow=False)
    async with session:
        assert await session.send("hi") == "Hello there."
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.time_to_first_token is not None
    assert metrics.time_to_first_token >= llm.waited  # measured to the real token
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello there."]


class EmptyFirstTTS(FakeTTS):
    """Yields an empty chunk at once, then nothing."""

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(b"", self.sample_rate)
        await anyio.sleep(3600)
        yield AudioChunk(b"\x00\x00", self.sample_rate)  # pragma: no cover


async def test_an_empty_first_chunk_does_not_disarm_the_tts_timeout() -> None:
    session, renderer, events = make(
        "audio", tts=EmptyFirstTTS(), slow=False, timeouts=Timeouts(tts_first_chunk=0.05)
    )
    with anyio.fail_after(10):
        async with session:
            with pytest.raises(ProviderTimeout, match="no audio"):
                await session.send("hi")
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.time_to_first_speech is None  # an empty chunk is not speech
    assert assistant(session.history) == []
    check_truth(session.history, events, renderer, ms_per_char=MS)


# -- the accounting itself ------------------------------------------------------------------------


def test_spoken_prefix_counts_characters_and_keeps_whole_words() -> None:
    # A long first word is not "one word of five" said after a fifth of the time.
    assert spoken_prefix("extraordinarily a b c d", 0.2) == ""
    assert spoken_prefix("a b c d extraordinarily", 0.35) == "a b c d"
    assert spoken_prefix("one two", 1.0) == "one two"
    assert spoken_prefix("one two", 0.0) == ""
    assert spoken_prefix("你好世界。", 0.5) == "你好"  # CJK: a cut between characters
    assert spoken_prefix("one two", float("nan")) == ""


async def test_the_console_renderer_reports_the_words_it_said() -> None:
    from avatarkit.builtins.console import ConsoleRenderer

    words = [f"word{i}" for i in range(100)]
    text = " ".join(words) + "."
    renderer = ConsoleRenderer(words_per_minute=600)  # a word every 0.1 s
    session = AvatarSession(llm=FakeLLM([text]), renderer=renderer)
    events: list[Event] = []
    session.on_event(events.append)
    async with session, anyio.create_task_group() as tg:
        tg.start_soon(session.say, text)
        await wait_until(lambda: bool(renderer.spoken))
        await anyio.sleep(0.35)
        await session.interrupt()
    recorded = assistant(session.history)[0].split()
    assert 3 <= len(recorded) < len(words)
    assert recorded == words[: len(recorded)]
    # The cut sentence records exactly the words the renderer reported saying.
    last = [e for e in events if isinstance(e, SentenceEnded)][-1]
    fraction = renderer.spoken_fraction()
    assert fraction is not None
    assert last.spoken == spoken_prefix(renderer.spoken[-1], fraction)
    assert last.interrupted
