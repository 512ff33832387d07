"""How a turn hands sentences on: the hand-over queue, the TTS look-ahead, no garbage cycles.

The audio route starts a sentence's TTS when it is queued and a slot is free (one sentence
speaking and ``lookahead`` synthesising), from the producer or from the speaker as it finishes
a sentence, with no scheduling task of its own. These tests pin that down on asyncio and trio:
never more than ``lookahead + 1`` syntheses at once, the next one starting while the current
sentence plays, none after an interrupt; and a turn leaves nothing in reference cycles, which
the serve process's collector policy relies on (``avatarkit.serve.collector``).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit import AudioChunk, AvatarSession
from avatarkit._handoff import Handoff
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTextRenderer, FakeTTS

pytestmark = pytest.mark.anyio

REPLY = "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen."


class CountingTTS(FakeTTS):
    """Records how many syntheses run at once, and when each started and ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.active = 0
        self.most = 0
        self.log: list[tuple[str, str, float]] = []

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.active += 1
        self.most = max(self.most, self.active)
        self.log.append(("start", text, anyio.current_time()))
        try:
            async for chunk in super().synthesize(text):
                yield chunk
        finally:
            self.active -= 1
            self.log.append(("end", text, anyio.current_time()))


# -- the hand-over queue ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=20), st.booleans())
def test_the_consumer_gets_every_item_in_order_then_none(pauses: list[int], leave: bool) -> None:
    async def scenario() -> None:
        handoff: Handoff[int] = Handoff()
        got: list[int] = []

        async def produce() -> None:
            for i, pause in enumerate(pauses):
                for _ in range(pause):
                    await anyio.lowlevel.checkpoint()
                assert handoff.put(i)
            handoff.close()
            assert not handoff.put(-1)  # closed: refused

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            while (item := await handoff.get()) is not None:
                got.append(item)
        assert got == list(range(len(pauses)))
        assert await handoff.get() is None  # stays ended
        if leave:
            assert handoff.leave() == []

    for backend in ("asyncio", "trio"):
        anyio.run(scenario, backend=backend)


async def test_a_consumer_that_leaves_gets_the_rest_back_and_puts_are_refused() -> None:
    handoff: Handoff[str] = Handoff()
    assert handoff.put("a")
    assert handoff.put("b")
    assert await handoff.get() == "a"
    assert handoff.leave() == ["b"]
    assert handoff.gone
    assert not handoff.put("c")
    assert await handoff.get() is None


async def test_a_waiting_consumer_wakes_for_an_item_and_for_the_end() -> None:
    handoff: Handoff[str] = Handoff()
    got: list[str | None] = []

    async def consume() -> None:
        got.append(await handoff.get())
        got.append(await handoff.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        handoff.put("x")
        await anyio.wait_all_tasks_blocked()
        assert got == ["x"]
        handoff.close()
    assert got == ["x", None]


async def test_get_is_a_checkpoint_even_with_items_waiting() -> None:
    handoff: Handoff[int] = Handoff()
    handoff.put(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await handoff.get()
        pytest.fail("a cancelled get() returned")  # pragma: no cover
    assert scope.cancelled_caught


# -- the TTS look-ahead --------------------------------------------------------------------


@pytest.mark.parametrize("lookahead", [0, 1, 2])
async def test_never_more_than_lookahead_plus_one_syntheses_and_each_starts_in_time(
    lookahead: int,
) -> None:
    tts = CountingTTS(chunk_delay=0.001, ms_per_char=2.0)
    renderer = FakeAudioRenderer(realtime=True)
    session = AvatarSession(llm=FakeLLM([REPLY]), tts=tts, renderer=renderer, lookahead=lookahead)
    async with session:
        said = await session.send("count")
    assert said == REPLY
    sentences = [t for kind, t, _ in tts.log if kind == "start"]
    assert len(sentences) == 5
    assert tts.most <= lookahead + 1
    starts = {t: at for kind, t, at in tts.log if kind == "start"}
    spoken = [(u.started_at, u.ended_at) for u in renderer.utterances]
    for i in range(1, len(sentences)):
        _, ended = spoken[i - 1]
        assert ended is not None
        if lookahead == 0:
            # one at a time: the next TTS starts only once the sentence before was spoken
            assert starts[sentences[i]] >= ended
        else:
            # the next sentence is synthesised while the one before plays
            assert starts[sentences[i]] < ended
    if lookahead >= 1:
        assert tts.most >= 2  # the look-ahead did overlap


async def test_no_tts_starts_after_an_interrupt_and_none_is_left_running() -> None:
    tts = CountingTTS(ms_per_char=5.0)
    renderer = FakeAudioRenderer(realtime=True)
    session = AvatarSession(llm=FakeLLM([REPLY]), tts=tts, renderer=renderer, lookahead=1)
    async with session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.send, "count")
            await wait_for(lambda: bool(renderer.utterances))
            await session.interrupt()
        started = len([1 for kind, *_ in tts.log if kind == "start"])
        await anyio.sleep(0.05)
        assert len([1 for kind, *_ in tts.log if kind == "start"]) == started
        assert started <= 2  # the sentence speaking and one ahead
        assert tts.active == 0


async def wait_for(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():  # noqa: ASYNC110 (the fake renderer has no event to wait on)
            await anyio.sleep(0.001)


# -- no garbage in reference cycles --------------------------------------------------------


@pytest.mark.parametrize("route", ["audio", "text"])
async def test_a_turn_leaves_nothing_in_reference_cycles(route: str) -> None:
    tts = FakeTTS() if route == "audio" else None
    renderer = FakeAudioRenderer() if route == "audio" else FakeTextRenderer()
    session = AvatarSession(llm=FakeLLM([REPLY]), tts=tts, renderer=renderer, max_history=4)
    async with session:
        await session.send("warm up")  # first-use imports and caches
        await session.send("warm up")
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(3):
                await session.send("again")
            gc.collect()
            garbage = [type(o).__qualname__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert garbage == []
