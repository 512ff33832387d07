"""Provider failures come out as avatarkit errors with an event and metrics, in the documented
order; the speak timeout never fires while audio is still playing (asyncio and trio)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from avatarkit import (
    AudioChunk,
    AvatarSession,
    ErrorEvent,
    Message,
    ProviderError,
    TurnMetrics,
)
from avatarkit.events import Event, SentenceEnded, SentenceStarted, StateChanged, TextDelta
from avatarkit.session import Timeouts
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTextRenderer, FakeTTS


class Boom(Exception):
    pass


class CallFailsLLM(FakeLLM):
    """``stream`` is a plain method that raises (an SDK call failing before it streams)."""

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        raise Boom("refused before streaming")


class NotAnIteratorLLM(FakeLLM):
    """``stream`` returns something that cannot be iterated (a plugin bug)."""

    def stream(self, messages: Sequence[Message]) -> Any:
        return 42


class CallFailsTTS(FakeTTS):
    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        raise Boom("refused before streaming")


CASES = [
    pytest.param("llm", CallFailsLLM(), None, id="llm call raises"),
    pytest.param("llm", NotAnIteratorLLM(), None, id="llm returns no iterator"),
    pytest.param("tts", FakeLLM(), CallFailsTTS(), id="tts call raises"),
]


@pytest.mark.parametrize(("stage", "llm", "tts"), CASES)
async def test_a_provider_call_that_raises_before_streaming_is_an_avatarkit_error(
    stage: str, llm: Any, tts: Any
) -> None:
    renderer = FakeAudioRenderer() if tts is not None else FakeTextRenderer()
    session = AvatarSession(llm=llm, tts=tts, renderer=renderer)
    events: list[Event] = []
    session.on_event(events.append)
    async with session:
        with pytest.raises(ProviderError) as info:
            await session.send("hi")
        assert session.state == "idle"
    assert not isinstance(info.value, BaseExceptionGroup)
    assert info.value.provider == type(llm if stage == "llm" else tts).__name__
    assert [(e.turn, e.stage) for e in events if isinstance(e, ErrorEvent)] == [(1, stage)]
    assert [m.turn for m in events if isinstance(m, TurnMetrics)] == [1]


def kinds(events: Sequence[Event]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, StateChanged):
            out.append(f"state:{e.state}")
        elif not isinstance(e, TextDelta):
            out.append(e.type)
    return out


class FailsAfterFirstSentence(FakeLLM):
    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        yield "Hello there. "
        raise Boom("dropped")


async def test_event_order_on_failure_is_the_documented_one() -> None:
    """docs/guide/events.md: ..., sentence_end, error, metrics, state: idle."""
    session = AvatarSession(llm=FailsAfterFirstSentence(), renderer=FakeTextRenderer())
    events: list[Event] = []
    session.on_event(events.append)
    async with session:
        with pytest.raises(ProviderError):
            await session.send("hi")
        failed = kinds(events)
        events.clear()
        await session.say("All good.")
    assert failed[0] == "state:thinking"
    assert failed[-3:] == ["error", "metrics", "state:idle"]
    if "sentence_start" in failed:
        assert failed.index("sentence_end") < failed.index("error")
    assert kinds(events) == [
        "state:speaking",
        "sentence_start",
        "sentence_end",
        "metrics",
        "state:idle",
        "state:closed",
    ]


# -- the speak timeout ----------------------------------------------------------------------------

URL = "Visit https://example.com/docs/reference/session/timeouts/speak-and-more today."
CJK = "今日はとても良い天気ですね、散歩に行きましょうか。"


@pytest.mark.parametrize(
    ("text", "chunk_delay"),
    [
        pytest.param(URL, 0.0, id="long url, fast tts"),
        pytest.param("One two three.", 0.15, id="tts slower than real time"),
    ],
)
async def test_no_speak_timeout_while_audio_plays(text: str, chunk_delay: float) -> None:
    # 25 ms of audio per character: the URL sentence is 2 s of audio in 3 "words"; a
    # word-count estimate (about 0.4 s a word) plus the 0.2 s limit would cut it, and so it
    # would a TTS that takes 1.6 s to make 0.2 s of audio while the renderer waits for it.
    tts = FakeTTS(ms_per_char=25, chunk_ms=20, chunk_delay=chunk_delay)
    renderer = FakeAudioRenderer(realtime=True)
    session = AvatarSession(
        llm=FakeLLM([text]), tts=tts, renderer=renderer, timeouts=Timeouts(speak=0.2)
    )
    events: list[Event] = []
    session.on_event(events.append)
    async with session:
        assert await session.say(text) == text
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    assert renderer.utterances[0].duration == pytest.approx(len(text) * 0.025, abs=0.001)


@pytest.mark.parametrize("text", [URL, CJK])
async def test_no_speak_timeout_for_long_urls_or_cjk_on_the_text_route(text: str) -> None:
    # The renderer says 14 characters a second, an ordinary pace: a word count takes the CJK
    # sentence (no spaces) for one word, about 0.4 s.
    renderer = FakeTextRenderer(seconds_per_char=1 / 14)
    session = AvatarSession(llm=FakeLLM([text]), renderer=renderer, timeouts=Timeouts(speak=0.2))
    events: list[Event] = []
    session.on_event(events.append)
    async with session:
        assert await session.say(text) == text
    assert renderer.completed == [text]
    ended = [e for e in events if isinstance(e, SentenceEnded)]
    assert [e.interrupted for e in ended] == [False]
    assert len([e for e in events if isinstance(e, SentenceStarted)]) == 1
