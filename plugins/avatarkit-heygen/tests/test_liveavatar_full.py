"""FULL mode (speak_text): LiveAvatar's data-message protocol, without a LiveKit server.

The HTTP side (token, start, keep-alive, stop) is the real fake server on 127.0.0.1. The LiveKit
room is :class:`FakeRoom` behind the renderer's DataTransport seam, answering as LiveAvatar's
agent does; what runs for real against livekit is only a failed join (no LiveKit server here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from avatarkit.errors import ProviderConnectionError, ProviderError
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_full import (
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    LiveKitDataTransport,
    encode_command,
    parse_event,
)
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar, FakeRoom


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


def make(fake: FakeLiveAvatar, room: FakeRoom, **options: Any) -> LiveAvatarRenderer:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "avatar_id": "av-1",
        "base_url": fake.base_url,
        "keep_alive": False,
        "transport": lambda: room,
    }
    renderer = LiveAvatarRenderer(**(settings | options))
    renderer.configure_route("text")
    return renderer


# -- encoding -------------------------------------------------------------------------------------


def test_commands_are_json_with_session_and_event_ids() -> None:
    payload = encode_command("avatar.speak_text", session_id="s1", event_id="e1", text="Hi.")
    assert json.loads(payload) == {
        "event_type": "avatar.speak_text",
        "session_id": "s1",
        "event_id": "e1",
        "text": "Hi.",
    }
    assert CONTROL_TOPIC == "agent-control"
    assert RESPONSE_TOPIC == "agent-response"


def test_parse_event_ignores_what_it_does_not_understand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="avatarkit_heygen")
    assert parse_event(RESPONSE_TOPIC, b'{"event_type": "avatar.speak_ended", "event_id": "e"}')
    assert parse_event(RESPONSE_TOPIC, b'{"type": "avatar.speak_started"}') == {
        "type": "avatar.speak_started",
        "event_type": "avatar.speak_started",
    }
    assert parse_event("lk.chat", b'{"event_type": "x"}') is None
    assert parse_event(RESPONSE_TOPIC, b"\xff\xfe not json") is None
    assert parse_event(RESPONSE_TOPIC, b"[1, 2]") is None
    assert parse_event(RESPONSE_TOPIC, b'{"event_id": "e"}') is None
    assert "ignoring" in caplog.text


# -- the renderer in FULL mode ---------------------------------------------------------------------


async def test_joins_the_room_as_the_agent(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    async with make(fake, room) as renderer:
        sid = fake.only_session().session_id
        assert room.connected_with == ("ws://127.0.0.1:9/livekit", f"agent-{sid}")
        assert renderer.viewer is not None
        assert renderer.viewer.token == f"viewer-{sid}"  # the viewer gets the client token
    assert room.closed == 1
    assert fake.only_session().stops == 1


async def test_speak_text_publishes_one_command_and_waits_for_its_end(
    fake: FakeLiveAvatar,
) -> None:
    room = FakeRoom(seconds_per_word=1000)  # the fake agent never finishes by itself
    renderer = make(fake, room)
    returned = anyio.Event()

    async def say() -> None:
        await renderer.speak_text("Hello there, nice to meet you.")
        returned.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(say)
        await fake.wait_for(lambda: bool(room.commands("avatar.speak_text")))
        await anyio.sleep(0.05)
        assert not returned.is_set()
        command = room.commands("avatar.speak_text")[0]
        room.emit(RESPONSE_TOPIC, {"event_type": "avatar.speak_ended", "event_id": "other"})
        room.emit(
            RESPONSE_TOPIC, {"event_type": "avatar.speak_ended", "event_id": command["event_id"]}
        )
        with anyio.fail_after(2):
            await returned.wait()
    assert command["session_id"] == fake.only_session().session_id
    assert command["text"] == "Hello there, nice to meet you."
    assert [topic for _, topic, _ in room.published] == [CONTROL_TOPIC]


async def test_each_sentence_is_its_own_command(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=0.001)
    async with make(fake, room) as renderer:
        await renderer.speak_text("One.")
        await renderer.speak_text("Two words.")
    commands = room.commands("avatar.speak_text")
    assert [c["text"] for c in commands] == ["One.", "Two words."]
    assert commands[0]["event_id"] != commands[1]["event_id"]


async def test_events_without_event_id_match_the_oldest_utterance(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(echo_event_id=False)
    async with make(fake, room) as renderer:
        with anyio.fail_after(2):
            await renderer.speak_text("Hello.")


async def test_junk_in_the_room_is_ignored(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="avatarkit_heygen")
    room = FakeRoom()
    async with make(fake, room) as renderer:
        room.emit(RESPONSE_TOPIC, b"not json at all")
        room.emit(RESPONSE_TOPIC, {"event_type": "user.transcription", "text": "hi"})
        room.emit("some-other-topic", {"event_type": "avatar.speak_ended"})
        with anyio.fail_after(2):
            await renderer.speak_text("Still works.")
    assert "ignoring user.transcription" in caplog.text
    assert "ignoring data on topic 'some-other-topic'" in caplog.text


async def test_speak_text_times_out_when_no_end_comes(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    room = FakeRoom(seconds_per_word=1000)
    async with make(fake, room, speak_timeout_grace=0.1) as renderer:
        with anyio.fail_after(5):
            await renderer.speak_text("Hi.")
    assert "no speak_ended" in caplog.text


async def test_interrupt_publishes_and_returns_at_once(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=1000)
    renderer = make(fake, room)
    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak_text, "A very long story begins here.")
        await fake.wait_for(lambda: bool(room.commands("avatar.speak_text")))
        with anyio.fail_after(2):
            await renderer.interrupt()
    interrupt = room.commands("avatar.interrupt")
    assert len(interrupt) == 1
    assert interrupt[0]["session_id"] == fake.only_session().session_id
    assert interrupt[0]["event_id"]


async def test_keep_alive_goes_over_http_in_full_mode(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    async with make(fake, room, keep_alive=True, keep_alive_interval=0.05):
        await fake.wait_for(lambda: fake.paths().count("/v1/sessions/keep-alive") >= 2)
    sid = fake.only_session().session_id
    request = next(r for r in fake.requests if r[0] == "/v1/sessions/keep-alive")
    assert request[1]["authorization"] == f"Bearer {fake.only_session().token}"
    assert request[2] == {"session_id": sid}


async def test_leaving_the_room_ends_the_session(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=1000)
    renderer = make(fake, room)
    async with renderer:
        async with anyio.create_task_group() as tg:

            async def say() -> None:
                with pytest.raises(ProviderConnectionError, match="ended while speaking"):
                    await renderer.speak_text("Hello.")

            tg.start_soon(say)
            await fake.wait_for(lambda: bool(room.commands("avatar.speak_text")))
            room.disconnect("room deleted")
        assert renderer.state == "ended"
        with pytest.raises(ProviderConnectionError, match="has ended"):
            await renderer.speak_text("Again.")
    assert fake.only_session().stops == 1


async def test_speak_audio_is_refused_in_full_mode(fake: FakeLiveAvatar) -> None:
    from avatarkit.errors import SessionError
    from avatarkit.testing import FakeTTS

    async with make(fake, FakeRoom()) as renderer:
        with pytest.raises(SessionError, match="audio route"):
            await renderer.speak(FakeTTS().synthesize("x"))


# -- the real livekit SDK, as far as this machine allows -------------------------------------------


async def test_livekit_transport_needs_asyncio(anyio_backend: str) -> None:
    transport = LiveKitDataTransport(connect_timeout=1)
    if anyio_backend == "trio":
        with pytest.raises(ProviderError, match="asyncio"):
            await transport.connect("ws://127.0.0.1:9", "t", on_data=print, on_disconnected=print)
    else:
        # nothing listens on 127.0.0.1:9: the real SDK fails to join, as an avatarkit error
        with pytest.raises(ProviderConnectionError, match="cannot join"):
            await transport.connect("ws://127.0.0.1:9", "t", on_data=print, on_disconnected=print)
    await transport.close()
    assert await transport.wait_for_participants(["heygen"], 0.01) == {"heygen"}


async def test_full_session_fails_cleanly_when_the_room_cannot_be_joined(
    fake: FakeLiveAvatar, anyio_backend: str
) -> None:
    renderer = LiveAvatarRenderer(
        api_key=API_KEY, avatar_id="av-1", base_url=fake.base_url, connect_timeout=1
    )
    with pytest.raises(ProviderError):
        await renderer.start()
    assert fake.only_session().stops == 1  # the paid session is stopped after the failed join


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the livekit SDK runs on asyncio only
async def test_sdk_data_packets_reach_the_renderer_with_their_topic(anyio_backend: str) -> None:
    """The SDK's own Room and DataPacket, wired as in production (no server needed to emit)."""
    from livekit import rtc

    from avatarkit_heygen.liveavatar_full import _DataRoom

    received: list[tuple[str, bytes]] = []
    room = rtc.Room()
    _DataRoom(on_packet=lambda t, p: received.append((t, p)), provider="liveavatar").attach(room)
    payload = b'{"event_type": "avatar.speak_ended", "event_id": "e1"}'
    packet = rtc.DataPacket(
        data=payload, kind=rtc.DataPacketKind.KIND_RELIABLE, participant=None, topic=RESPONSE_TOPIC
    )
    room.emit("data_received", packet)
    assert received == [(RESPONSE_TOPIC, payload)]
    assert parse_event(*received[0]) == {"event_type": "avatar.speak_ended", "event_id": "e1"}
