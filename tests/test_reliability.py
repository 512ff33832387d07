"""Fault injection at every stage of a turn, on both routes (asyncio and trio).

Each fault is injected into the first turn only. The invariants checked for every one: the turn
ends with exactly one ErrorEvent naming the stage, the caller gets an avatarkit error (never the
vendor's exception), the session goes back to idle and the next turn speaks the whole reply,
history holds only what was said, and every provider is closed exactly once at the end. A hung
provider is turned into a ProviderTimeout by the matching :class:`Timeouts` limit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from tests.truth import check_truth

from avatarkit import (
    AudioChunk,
    AvatarKitError,
    AvatarSession,
    ErrorEvent,
    Message,
    ProviderError,
    ProviderTimeout,
    TurnMetrics,
)
from avatarkit.events import Event
from avatarkit.session import Timeouts
from avatarkit.testing import (
    FakeAudioRenderer,
    FakeLLM,
    FakeTextRenderer,
    FakeTTS,
    Utterance,
    wait_until,
)

REPLY = "First sentence here. Second one follows. Third and last!"
SENTENCES = ["First sentence here.", "Second one follows.", "Third and last!"]
HANG = 3600.0  # "forever": only a timeout or a cancellation ends it
SHORT = 0.05  # the limit used to turn a hang into an error


class Boom(Exception):
    """A vendor exception the engine has never heard of."""


# -- providers with one-shot faults ---------------------------------------------------------------


class FaultyLLM(FakeLLM):
    """``mode``: raise-first (before the first token), raise-after (after two tokens), hang."""

    def __init__(self, mode: str | None = None) -> None:
        super().__init__([REPLY])
        self.mode = mode
        self.streams_open = 0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        mode, self.mode = self.mode, None  # the fault hits one turn only
        self.streams_open += 1
        try:
            if mode == "raise-first":
                raise Boom("llm exploded before the first token")
            if mode == "hang":
                await anyio.sleep(HANG)
            async with aclosing(super().stream(messages)) as tokens:
                async for token in tokens:
                    yield token
                    if mode == "raise-after" and token.endswith("here. "):
                        raise Boom("llm exploded mid-reply")
        finally:
            self.streams_open -= 1


class FaultyTTS(FakeTTS):
    """``mode``: raise-first, raise-mid (after one chunk), hang (before the first chunk)."""

    def __init__(self, mode: str | None = None) -> None:
        super().__init__(ms_per_char=2, chunk_ms=10)
        self.mode = mode
        self.streams_open = 0

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        mode, self.mode = self.mode, None
        self.streams_open += 1
        try:
            if mode == "raise-first":
                raise Boom("tts exploded")
            if mode == "hang":
                await anyio.sleep(HANG)
            async with aclosing(super().synthesize(text)) as chunks:
                i = 0
                async for chunk in chunks:
                    if mode == "raise-mid" and i == 1:
                        raise Boom("tts exploded mid-audio")
                    yield chunk
                    i += 1
        finally:
            self.streams_open -= 1


@dataclass
class RendererFaults:
    speak: str | None = None  # raise | hang
    caption: bool = False
    interrupt: str | None = None  # raise | hang (persistent: every call)
    close: bool = False


class _Faults:
    faults: RendererFaults

    def _speak_fault(self) -> str | None:
        mode, self.faults.speak = self.faults.speak, None
        return mode

    captions: list[str]

    def caption(self, text: str) -> None:
        if self.faults.caption:
            self.faults.caption = False
            raise Boom("caption failed")
        self.captions.append(text)  # the engine captions each sentence as it starts saying it


class FaultyTextRenderer(_Faults, FakeTextRenderer):
    def __init__(self, faults: RendererFaults) -> None:
        super().__init__()
        self.faults = faults
        self.captions = []

    async def speak_text(self, text: str) -> None:
        mode = self._speak_fault()
        if mode is not None:  # given the sentence, it says none of it
            self.spoken.append(text)
            self.fractions.append(0.0)
        if mode == "raise":
            raise Boom("renderer lost its connection")
        if mode == "hang":
            await anyio.sleep(HANG)
        await super().speak_text(text)

    async def interrupt(self) -> None:
        await _interrupt_fault(self.faults)
        await super().interrupt()

    async def close(self) -> None:
        await super().close()
        if self.faults.close:
            raise Boom("renderer close failed")


class FaultyAudioRenderer(_Faults, FakeAudioRenderer):
    def __init__(self, faults: RendererFaults) -> None:
        super().__init__()
        self.faults = faults
        self.captions = []

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        mode = self._speak_fault()
        if mode is not None:
            utterance = Utterance()
            self.utterances.append(utterance)
        if mode == "raise":
            async for chunk in audio:
                utterance.chunks.append(chunk)  # it took one chunk, then failed
                raise Boom("renderer lost its connection")
        if mode == "hang":
            await anyio.sleep(HANG)
        await super().speak(audio)

    async def interrupt(self) -> None:
        await _interrupt_fault(self.faults)
        await super().interrupt()

    async def close(self) -> None:
        await super().close()
        if self.faults.close:
            raise Boom("renderer close failed")


async def _interrupt_fault(faults: RendererFaults) -> None:
    if faults.interrupt == "raise":
        raise Boom("renderer interrupt failed")
    if faults.interrupt == "hang":
        await anyio.sleep(HANG)


# -- the matrix -----------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    routes: tuple[str, ...]
    stage: str
    error: type[AvatarKitError] = ProviderError
    llm: str | None = None
    tts: str | None = None
    renderer: RendererFaults = field(default_factory=RendererFaults)
    timeouts: Timeouts = field(default_factory=Timeouts)


BOTH = ("text", "audio")
FAULTS = [
    Fault("llm raises before the first token", BOTH, "llm", llm="raise-first"),
    Fault("llm raises after the first sentence", BOTH, "llm", llm="raise-after"),
    Fault(
        "llm hangs before the first token",
        BOTH,
        "llm",
        ProviderTimeout,
        llm="hang",
        timeouts=Timeouts(first_token=SHORT),
    ),
    Fault("tts raises before audio", ("audio",), "tts", tts="raise-first"),
    Fault("tts raises mid-audio", ("audio",), "tts", tts="raise-mid"),
    Fault(
        "tts hangs before the first chunk",
        ("audio",),
        "tts",
        ProviderTimeout,
        tts="hang",
        timeouts=Timeouts(tts_first_chunk=SHORT),
    ),
    Fault("renderer raises in speak", BOTH, "renderer", renderer=RendererFaults(speak="raise")),
    Fault("renderer raises in caption", BOTH, "renderer", renderer=RendererFaults(caption=True)),
    Fault(
        "renderer hangs in speak",
        BOTH,
        "renderer",
        ProviderTimeout,
        renderer=RendererFaults(speak="hang"),
        timeouts=Timeouts(speak=SHORT),
    ),
    Fault(
        "llm raises and the renderer's interrupt raises too",
        BOTH,
        "llm",
        llm="raise-after",
        renderer=RendererFaults(interrupt="raise"),
    ),
    Fault(
        "llm raises and the renderer's interrupt hangs",
        BOTH,
        "llm",
        llm="raise-after",
        renderer=RendererFaults(interrupt="hang"),
        timeouts=Timeouts(interrupt_grace=SHORT),
    ),
]
CASES = [pytest.param(f, r, id=f"{r}: {f.name}") for f in FAULTS for r in f.routes]


@dataclass
class Rig:
    session: AvatarSession
    llm: FaultyLLM
    tts: FaultyTTS | None
    renderer: FaultyTextRenderer | FaultyAudioRenderer

    @property
    def providers(self) -> list[Any]:
        return [p for p in (self.llm, self.tts, self.renderer) if p is not None]

    def spoken(self) -> list[str]:
        return list(self.renderer.captions)


def make_rig(
    route: str,
    *,
    llm: str | None = None,
    tts: str | None = None,
    renderer: RendererFaults | None = None,
    timeouts: Timeouts | None = None,
    **kwargs: Any,
) -> Rig:
    faults = renderer or RendererFaults()
    r: FaultyTextRenderer | FaultyAudioRenderer = (
        FaultyTextRenderer(faults) if route == "text" else FaultyAudioRenderer(faults)
    )
    t = FaultyTTS(tts) if route == "audio" else None
    m = FaultyLLM(llm)
    session = AvatarSession(llm=m, tts=t, renderer=r, timeouts=timeouts, **kwargs)
    assert session.route == route
    return Rig(session, m, t, r)


async def collect(events: MemoryObjectReceiveStream[Event]) -> list[Event]:
    async with events:
        return [e async for e in events]


@pytest.mark.parametrize(("fault", "route"), CASES)
async def test_a_fault_ends_the_turn_with_an_error_and_the_session_recovers(
    fault: Fault, route: str
) -> None:
    faults = dataclasses.replace(fault.renderer)  # a fresh copy: the rig's faults heal
    rig = make_rig(route, llm=fault.llm, tts=fault.tts, renderer=faults, timeouts=fault.timeouts)
    with anyio.fail_after(10):  # a hang the engine failed to bound fails the test, not CI
        async with rig.session as session:
            events = session.subscribe()
            with pytest.raises(fault.error) as info:
                await session.send("first")
            assert not isinstance(info.value, Boom)
            if isinstance(info.value, ProviderError):
                expected = {"llm": rig.llm, "tts": rig.tts, "renderer": rig.renderer}[fault.stage]
                assert info.value.provider == type(expected).__name__
            assert session.state == "idle"
            said_in_failed_turn = rig.spoken()
            history_after_failure = list(session.history)

            rig.renderer.faults.interrupt = None  # heal the renderer for the next turn
            assert await session.send("second") == REPLY
            assert rig.spoken()[len(said_in_failed_turn) :] == SENTENCES

    # One error event, for the failed turn, naming the stage; metrics for both turns.
    seen = await collect(events)
    errors = [e for e in seen if isinstance(e, ErrorEvent)]
    assert [(e.turn, e.stage) for e in errors] == [(1, fault.stage)]
    assert isinstance(errors[0].error, fault.error)
    assert [m.turn for m in seen if isinstance(m, TurnMetrics)] == [1, 2]

    # History records the user's message and no more than the renderer said before the fault
    # (a sentence cut by the fault counts only its words said), and events agree with it.
    assert history_after_failure[0] == Message("user", "first")
    assert len(history_after_failure) in (1, 2)
    if len(history_after_failure) == 2:
        assert history_after_failure[1].role == "assistant"
    check_truth(session.history, seen, rig.renderer, ms_per_char=2)
    assert session.history[-2:] == [Message("user", "second"), Message("assistant", REPLY)]

    # Every stream the engine opened was closed; every provider closed exactly once.
    assert rig.llm.streams_open == 0
    if rig.tts is not None:
        assert rig.tts.streams_open == 0
    for provider in rig.providers:
        assert (provider.started, provider.closed) == (1, 1), type(provider).__name__


@pytest.mark.parametrize("route", BOTH)
@pytest.mark.parametrize("mode", ["raise", "hang"])
async def test_a_failing_renderer_interrupt_does_not_break_interrupt(route: str, mode: str) -> None:
    """interrupt() returns (the renderer is cut off after interrupt_grace) and the session goes
    on; a renderer whose interrupt() raises or hangs cannot hang the caller."""
    rig = make_rig(route, timeouts=Timeouts(interrupt_grace=SHORT))
    rig.renderer.faults.interrupt = mode
    if isinstance(rig.renderer, FaultyTextRenderer):
        rig.renderer.seconds_per_char = HANG
    else:
        rig.renderer.realtime = True
        assert rig.tts is not None
        rig.tts.ms_per_char = 1000  # long utterances
    with anyio.fail_after(10):
        async with rig.session as session, anyio.create_task_group() as tg:
            tg.start_soon(session.send, "first")
            await wait_until(lambda: session.state == "speaking")
            await session.interrupt()
            assert session.state == "idle"
            rig.renderer.faults.interrupt = None
            if isinstance(rig.renderer, FaultyTextRenderer):
                rig.renderer.seconds_per_char = 0
            else:
                rig.renderer.realtime = False
                assert rig.tts is not None
                rig.tts.ms_per_char = 2
            assert await session.send("second") == REPLY
    assert rig.llm.streams_open == 0
    for provider in rig.providers:
        assert provider.closed == 1


@pytest.mark.parametrize("route", BOTH)
async def test_a_renderer_whose_close_raises_still_lets_every_provider_close(
    route: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig(route, renderer=RendererFaults(close=True))
    with caplog.at_level(logging.ERROR, logger="avatarkit.session"):
        async with rig.session as session:
            assert await session.send("hi") == REPLY
    assert session.state == "closed"
    for provider in rig.providers:
        assert provider.closed == 1
    assert "renderer close failed" in caplog.text


@pytest.mark.parametrize("route", BOTH)
async def test_every_provider_close_raising_still_closes_all(route: str) -> None:
    rig = make_rig(route)

    def failing(provider: Any) -> Callable[[], Any]:
        original = provider.close

        async def close() -> None:
            await original()
            raise Boom(f"{type(provider).__name__} close failed")

        return close

    for provider in rig.providers:
        provider.close = failing(provider)
    async with rig.session as session:
        await session.send("hi")
    for provider in rig.providers:
        assert provider.closed == 1


@pytest.mark.parametrize("route", BOTH)
async def test_faults_in_many_turns_in_a_row_leave_the_session_usable(route: str) -> None:
    """Alternate failing and healthy turns; the failures never accumulate state."""
    rig = make_rig(route, max_history=6)
    modes = ["raise-first", "raise-after"]
    async with rig.session as session:
        for i in range(6):
            rig.llm.mode = modes[i % 2]
            with pytest.raises(ProviderError):
                await session.send(f"bad {i}")
            assert await session.send(f"good {i}") == REPLY
            assert session.state == "idle"
    assert len(session.history) <= 6
    assert session.history[-1] == Message("assistant", REPLY)
    assert rig.llm.streams_open == 0


@pytest.mark.parametrize("route", BOTH)
async def test_an_avatarkit_error_from_a_provider_is_raised_as_is(route: str) -> None:
    class Refusing(FakeLLM):
        async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
            raise ProviderTimeout("upstream slow", provider="Refusing")
            yield ""  # pragma: no cover - makes this an async generator

    renderer = FakeTextRenderer() if route == "text" else FakeAudioRenderer()
    tts = FakeTTS() if route == "audio" else None
    async with AvatarSession(llm=Refusing(), tts=tts, renderer=renderer) as session:
        with pytest.raises(ProviderTimeout, match="upstream slow") as info:
            await session.send("hi")
    assert info.value.provider == "Refusing"
