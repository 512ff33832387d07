"""Whole avatarkit sessions on the liveavatar renderer, against the fake LiveAvatar on 127.0.0.1.

The engine picks the route; the renderer follows it (configure_route) and asks for that mode.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from avatarkit import AvatarSession
from avatarkit.errors import CapabilityError
from avatarkit.testing import FakeLLM, FakeTTS
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar, FakeRoom

REPLY = "Hello there. It is a fine day to talk about avatars!"


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


def renderer(fake: FakeLiveAvatar, **options: Any) -> LiveAvatarRenderer:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "avatar_id": "av-1",
        "base_url": fake.base_url,
        "keep_alive": False,
    }
    return LiveAvatarRenderer(**(settings | options))


async def test_audio_route_with_a_22k_tts(fake: FakeLiveAvatar) -> None:
    fake.knobs.playback = 0.3  # the avatar reports speak_ended a while after speak_end
    tts = FakeTTS(sample_rate=22050, ms_per_char=10, chunk_ms=40)
    session = AvatarSession(llm=FakeLLM([REPLY]), tts=tts, renderer=renderer(fake))
    assert session.route == "audio"
    async with session:
        reply = await session.send("hi")
    assert reply == REPLY
    assert fake.only_session().mode == "LITE"
    ends = fake.messages("agent.speak_end")
    assert len(ends) == len(tts.texts) == 2  # one speak_end per utterance
    for end, text in zip(ends, tts.texts, strict=True):
        event_id = end.message["event_id"]
        pcm = fake.audio(event_id)
        expected = len(text) * 0.010
        assert abs(len(pcm) / 48000 - expected) < 0.005, (text, len(pcm) / 48000)
        assert event_id in fake.ended_sent
    for message in fake.messages("agent.speak"):
        assert len(base64.b64decode(message.message["audio"])) <= 48000
    assert fake.violations == []
    assert fake.only_session().stops == 1


async def test_speak_returns_only_after_speak_ended(fake: FakeLiveAvatar) -> None:
    fake.knobs.playback = 0.5
    tts = FakeTTS(sample_rate=22050, ms_per_char=10)
    la = renderer(fake)
    session = AvatarSession(llm=FakeLLM([REPLY]), tts=tts, renderer=la)
    sentence_ends: list[float] = []
    original = la.speak

    async def timed_speak(audio: Any) -> None:
        await original(audio)
        sentence_ends.append(time.perf_counter())

    la.speak = timed_speak  # type: ignore[method-assign]
    async with session:
        await session.send("hi")
    ends = [r.message["event_id"] for r in fake.messages("agent.speak_end")]
    assert len(sentence_ends) == len(ends) == 2
    for returned_at, event_id in zip(sentence_ends, ends, strict=True):
        assert returned_at >= fake.ended_sent[event_id]


async def test_text_route_needs_no_tts(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=0.001)
    session = AvatarSession(llm=FakeLLM([REPLY]), renderer=renderer(fake, transport=lambda: room))
    assert session.route == "text"
    async with session:
        reply = await session.send("hi")
    assert reply == REPLY
    assert fake.only_session().mode == "FULL"
    assert [c["text"] for c in room.commands("avatar.speak_text")] == [
        "Hello there.",
        "It is a fine day to talk about avatars!",
    ]
    assert fake.only_session().stops == 1


async def test_prefer_text_even_with_a_tts(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    tts = FakeTTS()
    session = AvatarSession(
        llm=FakeLLM([REPLY]),
        tts=tts,
        renderer=renderer(fake, transport=lambda: room),
        prefer="text",
    )
    async with session:
        await session.send("hi")
    assert tts.texts == []
    assert fake.only_session().mode == "FULL"


def test_prefer_audio_without_tts_is_a_capability_error(fake: FakeLiveAvatar) -> None:
    with pytest.raises(CapabilityError, match="TTS"):
        AvatarSession(llm=FakeLLM(), renderer=renderer(fake), prefer="audio")


async def test_interrupt_mid_utterance(fake: FakeLiveAvatar) -> None:
    fake.knobs.playback = 1.0
    long_reply = "This sentence goes on and on and on for quite a long while indeed. " * 3
    tts = FakeTTS(sample_rate=22050, ms_per_char=20, chunk_ms=20, chunk_delay=0.01)
    session = AvatarSession(llm=FakeLLM([long_reply]), tts=tts, renderer=renderer(fake))
    async with session:
        async with anyio.create_task_group() as tg:
            result: list[str] = []

            async def talk() -> None:
                result.append(await session.send("tell me"))

            tg.start_soon(talk)
            await fake.wait_for(lambda: len(fake.messages("agent.speak")) >= 3)
            await session.interrupt()
        assert len(result) == 1
        assert len(result[0]) < len(long_reply)
        await anyio.sleep(0.1)  # late audio would have arrived by now
        kinds = [r.type for r in fake.received]
        cut = kinds.index("agent.interrupt")
        assert "agent.speak" not in kinds[cut:]
        assert session.history[-1].role == "assistant"
    assert fake.only_session().stops == 1


async def test_session_stopped_after_an_exception(fake: FakeLiveAvatar) -> None:
    session = AvatarSession(llm=FakeLLM(), tts=FakeTTS(), renderer=renderer(fake))

    async def app() -> None:
        async with session:
            await session.send("hi")
            raise RuntimeError("app bug")

    with pytest.raises(RuntimeError, match="app bug"):
        await app()
    assert fake.messages("agent.speak_end")
    assert fake.only_session().stops == 1


async def test_session_stopped_after_cancellation_mid_turn(fake: FakeLiveAvatar) -> None:
    fake.knobs.playback = 1.0
    session = AvatarSession(
        llm=FakeLLM(["A long enough sentence to still be speaking when cancelled."]),
        tts=FakeTTS(sample_rate=22050, ms_per_char=30),
        renderer=renderer(fake),
    )
    with anyio.CancelScope() as scope:
        async with session:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.send, "hi")
                await fake.wait_for(lambda: bool(fake.messages("agent.speak")))
                scope.cancel()
    assert scope.cancelled_caught
    await fake.wait_for(lambda: fake.only_session().stops == 1)
    assert fake.only_session().stops == 1


async def test_session_keeps_liveavatar_alive_while_idle(fake: FakeLiveAvatar) -> None:
    session = AvatarSession(
        llm=FakeLLM(),
        tts=FakeTTS(),
        renderer=renderer(fake, keep_alive=True, keep_alive_interval=0.05),
    )
    async with session:
        await session.say("Hi.")
        before = len(fake.messages("session.keep_alive"))
        await fake.wait_for(lambda: len(fake.messages("session.keep_alive")) >= before + 2)
