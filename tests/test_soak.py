"""Soak: 2,000 turns in one session (both routes, asyncio and trio) with the fakes.

Memory is measured with tracemalloc between turn 500 and turn 2,000 (after a warm-up, with a
full collection before each reading): a leak of even a hundred bytes a turn would show as
150 KB. History stays bounded by ``max_history`` with the system prompt kept, and an event
subscriber that keeps up sees every turn.
"""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import anyio.lowlevel
import pytest

from avatarkit import AvatarSession, Message, TurnMetrics
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTextRenderer, FakeTTS

TURNS = 2000
MEASURE_FROM = 500
MAX_HISTORY = 6
REPLIES = ["Ok. Sure thing.", "Fine!", "Yes. No. Maybe?"]
# Bytes a healthy session may still drift by between the two readings (allocator and interpreter
# caches warm up in steps); a per-turn leak of 100 bytes would be 150,000.
ALLOWED_GROWTH = 64 * 1024


@pytest.mark.parametrize("route", ["text", "audio"])
async def test_two_thousand_turns_keep_memory_and_history_bounded(route: str) -> None:
    llm = FakeLLM(REPLIES)
    tts = FakeTTS(ms_per_char=0.5) if route == "audio" else None
    renderer = FakeTextRenderer() if route == "text" else FakeAudioRenderer()
    session = AvatarSession(
        llm=llm, tts=tts, renderer=renderer, system_prompt="Be brief.", max_history=MAX_HISTORY
    )
    metrics = 0

    async def consume() -> None:
        nonlocal metrics
        async with events:
            async for event in events:
                if isinstance(event, TurnMetrics):
                    metrics += 1

    tracemalloc.start()
    try:
        async with session, anyio.create_task_group() as tg:
            events = session.subscribe()
            tg.start_soon(consume)
            for i in range(TURNS):
                if i == MEASURE_FROM:
                    gc.collect()
                    before = tracemalloc.get_traced_memory()[0]
                reply = await session.send(f"message {i}")
                assert reply in REPLIES
                while metrics <= i:
                    await anyio.lowlevel.checkpoint()
                assert len(session.history) <= MAX_HISTORY + 1
                assert session.history[0] == Message("system", "Be brief.")
                if i % 50 == 0:
                    forget_recordings(llm, tts, renderer)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            await session.close()  # ends the subscriber's stream, so consume() returns
    finally:
        tracemalloc.stop()

    assert after - before < ALLOWED_GROWTH, f"grew {after - before} bytes over {TURNS - 500} turns"
    assert metrics == TURNS  # the subscriber kept up and missed nothing
    assert session.history[0] == Message("system", "Be brief.")
    assert session.history[-2:] == [
        Message("user", f"message {TURNS - 1}"),
        Message("assistant", reply),
    ]
    assert session.history[1].role == "user"  # trimmed at an exchange boundary


def forget_recordings(
    llm: FakeLLM, tts: FakeTTS | None, renderer: FakeTextRenderer | FakeAudioRenderer
) -> None:
    """The fakes record every call for tests to inspect; that is the test's memory, not the
    session's, so it is dropped as the soak goes."""
    llm.calls.clear()
    renderer.events.clear()
    if tts is not None:
        tts.texts.clear()
    if isinstance(renderer, FakeTextRenderer):
        renderer.spoken.clear()
        renderer.completed.clear()
    else:
        renderer.utterances.clear()
