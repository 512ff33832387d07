"""Races between interrupt, barge-in and the natural end of a turn (asyncio and trio).

Each interleaving is forced with gates, not timing, so each test fails the same way every run
on an engine that has the race.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import pytest

from avatarkit import AvatarSession, Message
from avatarkit.events import Event, TurnMetrics
from avatarkit.session import Timeouts
from avatarkit.testing import FakeLLM, FakeTextRenderer, wait_until


class SlowInterruptRenderer(FakeTextRenderer):
    """``interrupt()`` takes until the test releases it (an HTTP call to the avatar service),
    then silences whatever is speaking at that moment, as a real service does. With
    ``hold_first``, the first utterance lasts until ``finish_first`` is set."""

    def __init__(self, *, hold_first: bool = False, seconds_per_char: float = 0.01) -> None:
        super().__init__(seconds_per_char=seconds_per_char)
        self.release = anyio.Event()
        self.finish_first = anyio.Event()
        self.hold_first = hold_first
        self.interrupt_calls = 0

    async def speak_text(self, text: str) -> None:
        if self.hold_first and not self.spoken:
            self.spoken.append(text)
            self.fractions.append(0.0)
            await self.finish_first.wait()
            self.completed.append(text)
            self.fractions[-1] = 1.0
            return
        await super().speak_text(text)

    async def interrupt(self) -> None:
        self.interrupt_calls += 1
        await self.release.wait()
        await super().interrupt()


SECOND = "The second turn says this sentence all the way through."


async def test_a_late_renderer_interrupt_does_not_cut_the_next_turn() -> None:
    renderer = SlowInterruptRenderer(hold_first=True)
    llm = FakeLLM(["One.", SECOND])
    session = AvatarSession(llm=llm, renderer=renderer, timeouts=Timeouts(interrupt_grace=10))
    replies: list[str] = []

    async def second() -> None:
        replies.append(await session.send("two"))

    with anyio.fail_after(20):
        async with session, anyio.create_task_group() as tg:
            tg.start_soon(session.send, "one")
            await wait_until(lambda: len(renderer.spoken) == 1)
            tg.start_soon(session.interrupt)
            await wait_until(lambda: renderer.interrupt_calls == 1)
            renderer.finish_first.set()  # the first turn ends by itself meanwhile
            await wait_until(lambda: session.state == "idle")
            tg.start_soon(second)
            await anyio.sleep(0.05)  # the next turn gets going...
            renderer.release.set()  # ...and only now does the old interrupt land
    assert replies == [SECOND]
    assert renderer.completed[-1] == SECOND
    assert session.history[-1] == Message("assistant", SECOND)


class GatedCloseStream:
    """An LLM stream that ends, then takes until ``gate`` to close (an HTTP response)."""

    def __init__(self, tokens: list[str], gate: anyio.Event) -> None:
        self.tokens = iter(tokens)
        self.gate = gate
        self.closing = False

    def __aiter__(self) -> GatedCloseStream:
        return self

    async def __anext__(self) -> str:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self.tokens)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closing = True
        await self.gate.wait()


class GatedCloseLLM(FakeLLM):
    def __init__(self, reply: str) -> None:
        super().__init__([reply])
        self.gate = anyio.Event()
        self.streams: list[GatedCloseStream] = []

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.streams.append(GatedCloseStream(list(self.replies[0]), self.gate))
        return self.streams[-1]


REPLY = "Hello there. All of this was said."


async def test_an_interrupt_racing_the_natural_end_does_not_mark_the_turn_interrupted() -> None:
    llm = GatedCloseLLM(REPLY)
    renderer = FakeTextRenderer()
    session = AvatarSession(llm=llm, renderer=renderer, timeouts=Timeouts(cleanup=10))
    events: list[Event] = []
    session.on_event(events.append)
    replies: list[str] = []

    async def talk() -> None:
        replies.append(await session.send("hi"))

    with anyio.fail_after(20):
        async with session, anyio.create_task_group() as tg:
            tg.start_soon(talk)
            await wait_until(lambda: len(renderer.completed) == 2 and llm.streams[0].closing)
            tg.start_soon(session.interrupt)  # everything was said; the turn is closing up
            await wait_until(lambda: renderer.interrupts == 1)
            llm.gate.set()
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.interrupted is False
    assert replies == [REPLY]
    assert session.history[-1] == Message("assistant", REPLY)


class EchoLLM(FakeLLM):
    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        yield f"You said {messages[-1].content}. "
        yield "And that is a fairly long answer to it."


@pytest.mark.parametrize("second", ["send", "say"])
async def test_of_two_barge_ins_the_newest_wins(second: str) -> None:
    llm = EchoLLM()
    # A's first sentence lasts until it is interrupted (110 s), so B always barges in on it,
    # however late a loaded machine starts B; C is said at the usual pace.
    renderer = SlowInterruptRenderer(seconds_per_char=10)
    session = AvatarSession(llm=llm, renderer=renderer, timeouts=Timeouts(interrupt_grace=10))
    replies: dict[str, str] = {}
    events: list[Event] = []
    session.on_event(events.append)

    async def run(name: str, how: str) -> None:
        call = session.send if how == "send" else session.say
        replies[name] = await call(name)

    with anyio.fail_after(20):
        async with session, anyio.create_task_group() as tg:
            tg.start_soon(run, "A", "send")
            await wait_until(lambda: bool(renderer.spoken))
            tg.start_soon(run, "B", "send")
            await wait_until(lambda: renderer.interrupt_calls == 1)
            tg.start_soon(run, "C", second)
            await wait_until(lambda: renderer.interrupt_calls == 2)
            renderer.seconds_per_char = 0.01
            renderer.release.set()
    expected_c = "You said C. And that is a fairly long answer to it." if second == "send" else "C"
    assert replies["B"] == ""  # superseded before it began: not answered
    assert replies["C"] == expected_c
    assert [m[-1].content for m in llm.calls] == ["A", "C"][: 1 + (second == "send")]
    users = [m.content for m in session.history if m.role == "user"]
    assert users == ["A", "B", "C"] if second == "send" else ["A", "B"]
    metrics = {e.turn: e for e in events if isinstance(e, TurnMetrics)}
    assert metrics[2].interrupted
    assert metrics[2].sentences == 0
