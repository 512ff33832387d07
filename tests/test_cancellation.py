"""Cancellation and faults at random points, chosen by hypothesis (asyncio and trio).

A schedule is: the route, how many turns the caller runs, the provider latencies (0 or a few
ms), and *where* something cuts in — at the k-th thing that happens in the session (an LLM token,
a TTS chunk, a chunk or sentence reaching the renderer, an event) — and *what*: the caller's
scope is cancelled, ``interrupt()``, ``close()`` from another task, a barge-in ``send``, or a
fault: the LLM fails at its next delta, the TTS at its next chunk, the renderer at its next
chunk (audio) or sentence (text). The audio renderer takes the chunks as the TTS made them or,
declaring ``max_chunk_seconds``, in joined blocks.

Whatever the schedule, afterwards: every provider that was started was closed exactly once,
every LLM and TTS stream the engine opened was closed, the renderer is not speaking, no task the
session started is still alive, and history is a prefix of what the renderer consumed, never
more: each sentence's recorded words fit in what the renderer actually said (the text fake's
record of the share it said; the audio the audio fake took from the iterator), and
``SentenceEnded`` agrees with history (:func:`truth.check_truth`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import sniffio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.truth import check_truth

from avatarkit import AudioChunk, AvatarKitError, AvatarSession, Message
from avatarkit.events import Event
from avatarkit.session import Timeouts
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTextRenderer, FakeTTS

REPLIES = [
    "First sentence here. Second one follows. Third and last!",
    "Short reply.",
    "One more time. With feeling, please.",
]


class Boom(Exception):
    """An injected provider fault."""


class Trigger:
    """Counts what happens in the session and fires the cut at the k-th happening; a fault
    cut arms ``fault`` (the provider that should fail next), which the provider then takes."""

    def __init__(self, at: int, fire: Callable[[], None]) -> None:
        self.at = at
        self.count = 0
        self.fire = fire
        self.fired = False
        self.fault: str | None = None

    def take(self, provider: str) -> None:
        """Raise the armed fault if it is ``provider``'s (once)."""
        if self.fault == provider:
            self.fault = None
            raise Boom(f"{provider} failed")

    def tick(self) -> None:
        self.count += 1
        if self.count == self.at and not self.fired:
            self.fired = True
            self.fire()


class CountingLLM(FakeLLM):
    def __init__(self, trigger: Trigger, **kwargs: Any) -> None:
        super().__init__(REPLIES, **kwargs)
        self.trigger = trigger
        self.open = 0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.open += 1
        try:
            async with aclosing(super().stream(messages)) as tokens:
                async for token in tokens:
                    self.trigger.tick()
                    self.trigger.take("llm")
                    yield token
        finally:
            self.open -= 1


class CountingTTS(FakeTTS):
    def __init__(self, trigger: Trigger, **kwargs: Any) -> None:
        super().__init__(ms_per_char=1, chunk_ms=10, **kwargs)
        self.trigger = trigger
        self.open = 0

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.open += 1
        try:
            async with aclosing(super().synthesize(text)) as chunks:
                async for chunk in chunks:
                    self.trigger.tick()
                    self.trigger.take("tts")
                    yield chunk
        finally:
            self.open -= 1


class _Said:
    """Records, per sentence given to the renderer, whether it was said to the end."""

    said: list[tuple[str, bool]]
    speaking: int
    trigger: Trigger


class CountingTextRenderer(_Said, FakeTextRenderer):
    def __init__(self, trigger: Trigger, seconds_per_char: float) -> None:
        super().__init__(seconds_per_char=seconds_per_char)
        self.trigger, self.said, self.speaking = trigger, [], 0

    async def speak_text(self, text: str) -> None:
        self.speaking += 1
        self.said.append((text, False))
        try:
            self.trigger.tick()
            if self.trigger.fault == "renderer":
                self.spoken.append(text)  # given the sentence, said none of it
                self.fractions.append(0.0)
                self.trigger.take("renderer")
            await super().speak_text(text)
            if self.completed and self.completed[-1] is text:
                self.said[-1] = (text, True)
        finally:
            self.speaking -= 1


class CountingAudioRenderer(_Said, FakeAudioRenderer):
    def __init__(self, trigger: Trigger, realtime: bool) -> None:
        super().__init__(realtime=realtime)
        self.trigger, self.said, self.speaking = trigger, [], 0
        self._caption = ""
        self.max_chunk_seconds: float | None = None

    def caption(self, text: str) -> None:
        self._caption = text

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        self.speaking += 1
        text = self._caption
        self.said.append((text, False))

        async def counted() -> AsyncIterator[AudioChunk]:
            async for chunk in audio:
                self.trigger.tick()
                yield chunk
                self.trigger.take("renderer")  # fails with that chunk taken

        try:
            async with aclosing(counted()) as chunks:
                await super().speak(chunks)
            whole = abs(self.utterances[-1].duration - len(text) * 0.001) < 0.0015
            if whole and not self.utterances[-1].interrupted:
                self.said[-1] = (text, True)
        finally:
            self.speaking -= 1


def task_count() -> int:
    """Tasks alive in this event loop (asyncio) or under the root task (trio)."""
    if sniffio.current_async_library() == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


@dataclass
class Schedule:
    route: str
    turns: int
    token_delay: float
    chunk_delay: float
    slow_renderer: bool
    lookahead: int
    cut_at: int
    action: str
    block: float | None = None  # audio: the renderer takes buffered audio in blocks up to this


schedules = st.builds(
    Schedule,
    route=st.sampled_from(["text", "audio"]),
    turns=st.integers(1, 3),
    token_delay=st.sampled_from([0.0, 0.0, 0.001]),
    chunk_delay=st.sampled_from([0.0, 0.001]),
    slow_renderer=st.booleans(),
    lookahead=st.integers(0, 2),
    cut_at=st.integers(1, 60),
    action=st.sampled_from(
        ["cancel", "interrupt", "close", "barge-in", "llm-fault", "tts-fault", "renderer-fault"]
    ),
    block=st.sampled_from([None, None, 0.025, 0.1]),
)


async def run_schedule(s: Schedule) -> None:
    tasks_before = task_count()
    scope = anyio.CancelScope()
    requested = anyio.Event()

    def fire() -> None:
        if s.action == "cancel":
            scope.cancel()
        elif s.action.endswith("-fault"):
            trigger.fault = s.action.removesuffix("-fault")
            requested.set()
        else:
            requested.set()

    trigger = Trigger(s.cut_at, fire)
    llm = CountingLLM(trigger, token_delay=s.token_delay)
    tts = CountingTTS(trigger, chunk_delay=s.chunk_delay) if s.route == "audio" else None
    renderer: CountingTextRenderer | CountingAudioRenderer = (
        CountingTextRenderer(trigger, 0.0002 if s.slow_renderer else 0.0)
        if s.route == "text"
        else CountingAudioRenderer(trigger, realtime=s.slow_renderer)
    )
    if s.block is not None and isinstance(renderer, CountingAudioRenderer):
        renderer.max_chunk_seconds = s.block
    session = AvatarSession(
        llm=llm,
        tts=tts,
        renderer=renderer,
        lookahead=s.lookahead,
        timeouts=Timeouts(interrupt_grace=1.0),
    )
    events: list[Event] = []
    session.on_event(events.append)
    session.on_event(lambda _event: trigger.tick())
    turn_marks: list[tuple[int, int]] = []  # (len(renderer.said), len(history)) at each turn

    async def cut_in() -> None:
        await requested.wait()
        if s.action.endswith("-fault"):
            return
        if s.action == "interrupt":
            await session.interrupt()
        elif s.action == "close":
            await session.close()
        else:
            turn_marks.append((len(renderer.said), len(session.history)))
            try:
                await session.send("barging in")
            except AvatarKitError:
                pass  # the session was closed under it

    with anyio.fail_after(20):
        with scope:
            async with session, anyio.create_task_group() as tg:
                tg.start_soon(cut_in)
                for i in range(s.turns):
                    turn_marks.append((len(renderer.said), len(session.history)))
                    try:
                        await session.send(f"turn {i}")
                    except AvatarKitError:
                        break  # closed by the cut, or a provider fault
                requested.set()  # the cut never came: let cut_in finish
        await session.close()  # idempotent; the session may have been left by cancellation

    assert session.state == "closed"
    for provider in (llm, tts, renderer):
        if provider is not None:
            assert (provider.started, provider.closed) == (1, 1), type(provider).__name__
    assert llm.open == 0
    assert tts is None or tts.open == 0
    assert renderer.speaking == 0
    await anyio.lowlevel.checkpoint()
    assert task_count() == tasks_before
    event(f"{s.action}: {'cut' if trigger.fired else 'not reached'}")
    check_truth(session.history, events, renderer, ms_per_char=1)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=schedules)
def test_cancellation_at_any_point_keeps_the_invariants(
    anyio_backend: str, schedule: Schedule
) -> None:
    anyio.run(run_schedule, schedule, backend=anyio_backend)


def _heygen_fake() -> Any:
    """The heygen plugin's fake HeyGen API (public testing API of avatarkit_heygen)."""
    import avatarkit_heygen.heygen_testing

    return avatarkit_heygen.heygen_testing


async def run_heygen_schedule(delay: float, action: str, fake: Any) -> None:
    import avatarkit_heygen.plugin
    from avatarkit import load_session
    from avatarkit.testing import FakeProvidersPlugin, registered

    server = fake.FakeHeyGen()
    try:
        config = {
            "llm": {"provider": "fake", "replies": [REPLIES[0]], "token_delay": 0.002},
            "renderer": {
                "provider": "heygen",
                "api_key": "${HEYGEN_API_KEY}",
                "base_url": server.base_url,
                "avatar_id": fake.AVATAR,
                "lead_time": 0.0,
                "retry_backoff": 0.0,
                "keep_alive": False,
            },
        }
        with registered(FakeProvidersPlugin(), avatarkit_heygen.plugin) as registry:
            session = load_session(config, registry=registry, env={"HEYGEN_API_KEY": fake.API_KEY})
        with anyio.fail_after(20):
            with anyio.move_on_after(delay):
                async with session, anyio.create_task_group() as tg:
                    if action == "interrupt":
                        tg.start_soon(session.send, "hi")
                        await anyio.sleep(delay / 2)
                        await session.interrupt()
                    elif action == "close":
                        tg.start_soon(session.send, "hi")
                        await anyio.sleep(delay / 2)
                        await session.close()
                    else:
                        await session.send("hi")
            await session.close()
        assert session.state == "closed"
        # Every HeyGen session the renderer created was stopped, whatever the cut.
        assert server.open_sessions() == []
    finally:
        server.close()


# httpx leaves its request-body generator to the garbage collector when a request is cancelled
# mid-flight, which trio reports; it is httpx's, holds nothing of HeyGen's, and is not what this
# test is about (reported to the heygen plugin's owner).
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <async_generator object ByteStream.__aiter__"
    ":pytest.PytestUnraisableExceptionWarning"
)
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delay=st.floats(0.0, 0.3),
    action=st.sampled_from(["cancel", "interrupt", "close"]),
)
def test_heygen_sessions_are_always_stopped(anyio_backend: str, delay: float, action: str) -> None:
    pytest.importorskip("avatarkit_heygen")
    anyio.run(run_heygen_schedule, delay, action, _heygen_fake(), backend=anyio_backend)
