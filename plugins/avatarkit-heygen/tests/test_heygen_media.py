"""LiveKit media, as far as it runs without a LiveKit server.

Real ``livekit.rtc`` objects throughout: a ``rtc.Room`` whose event emitter is driven with the
SDK's own track, participant and data-packet types, built from its protobuf messages. What needs
a LiveKit server (the WebRTC join, real frames) is replaced by ``LoopbackRoom``, an ``rtc.Room``
whose ``connect``/``disconnect`` only emit the state events the SDK would; one test also makes a
real connection attempt to a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import anyio
import pytest
from livekit import rtc
from livekit.rtc._proto import participant_pb2, track_pb2

from avatarkit.errors import ProviderConnectionError
from avatarkit_heygen import HeyGenRenderer
from avatarkit_heygen.media import LiveKitRoom, decode_data_message

from .conftest import API_KEY, AVATAR, FakeHeyGen


@pytest.fixture
def anyio_backend() -> str:
    # The livekit SDK runs only on asyncio (rtc.Room binds an asyncio loop).
    return "asyncio"


def video_track(sid: str = "TR_video") -> rtc.RemoteVideoTrack:
    info = track_pb2.TrackInfo(sid=sid, name="avatar-video", kind=track_pb2.KIND_VIDEO)
    return rtc.RemoteVideoTrack(track_pb2.OwnedTrack(info=info))


def audio_track(sid: str = "TR_audio") -> rtc.RemoteAudioTrack:
    info = track_pb2.TrackInfo(sid=sid, name="avatar-audio", kind=track_pb2.KIND_AUDIO)
    return rtc.RemoteAudioTrack(track_pb2.OwnedTrack(info=info))


def participant(identity: str = "heygen-avatar") -> rtc.RemoteParticipant:
    info = participant_pb2.ParticipantInfo(sid="PA_1", identity=identity, name="avatar")
    return rtc.RemoteParticipant(participant_pb2.OwnedParticipant(info=info))


def packet(payload: bytes | dict[str, Any]) -> rtc.DataPacket:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    return rtc.DataPacket(data=data, kind=rtc.DataPacketKind.KIND_RELIABLE, participant=None)


class LoopbackRoom(rtc.Room):
    """An ``rtc.Room`` whose join happens without a server: it emits what the SDK would."""

    instances: ClassVar[list[LoopbackRoom]] = []

    def __init__(self) -> None:
        super().__init__()
        self.joined: tuple[str, str, rtc.RoomOptions] | None = None
        LoopbackRoom.instances.append(self)

    async def connect(self, url: str, token: str, options: rtc.RoomOptions | None = None) -> None:
        self.joined = (url, token, options or rtc.RoomOptions())
        self.emit("connection_state_changed", rtc.ConnectionState.CONN_CONNECTED)

    async def disconnect(self, **kwargs: Any) -> None:
        if self.joined is not None:
            self.joined = None
            self.emit("connection_state_changed", rtc.ConnectionState.CONN_DISCONNECTED)
            self.emit("disconnected", rtc.DisconnectReason.CLIENT_INITIATED)


@pytest.fixture
def loopback_rooms(monkeypatch: pytest.MonkeyPatch) -> list[LoopbackRoom]:
    LoopbackRoom.instances = []
    monkeypatch.setattr(rtc, "Room", LoopbackRoom)
    return LoopbackRoom.instances


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def track(self, kind: str, track: Any, identity: str | None) -> None:
        self.events.append(("track", kind, track, identity))

    def data(self, message: dict[str, Any], identity: str | None) -> None:
        self.events.append(("data", message, identity))

    def state(self, state: str) -> None:
        self.events.append(("state", state))


def recorded_room() -> tuple[LiveKitRoom, Recorder]:
    rec = Recorder()
    room = LiveKitRoom(
        provider="heygen", on_track=rec.track, on_data=rec.data, on_state_change=rec.state
    )
    return room, rec


# -- the room's event handling ---------------------------------------------------------------


def test_decode_data_message() -> None:
    assert decode_data_message(b'{"type": "avatar_start_talking", "task_id": "t1"}') == {
        "type": "avatar_start_talking",
        "task_id": "t1",
    }
    assert decode_data_message("{}") == {}
    assert decode_data_message(b"not json") is None
    assert decode_data_message(b"\xff\xfe") is None
    assert decode_data_message(b"[1, 2]") is None


async def test_tracks_data_and_state_from_the_room_emitter() -> None:
    media, rec = recorded_room()
    room = rtc.Room()
    media.attach(room)
    video, audio, avatar = video_track(), audio_track(), participant()
    room.emit("track_subscribed", video, None, avatar)
    room.emit("track_subscribed", audio, None, avatar)
    room.emit("data_received", packet({"type": "avatar_stop_talking", "task_id": "t9"}))
    room.emit("data_received", packet(b"\x00binary"))  # ignored
    room.emit("connection_state_changed", rtc.ConnectionState.CONN_RECONNECTING)
    room.emit("track_unsubscribed", video, None, avatar)
    room.emit("disconnected", rtc.DisconnectReason.SERVER_SHUTDOWN)
    assert rec.events == [
        ("track", "video", video, "heygen-avatar"),
        ("track", "audio", audio, "heygen-avatar"),
        ("data", {"type": "avatar_stop_talking", "task_id": "t9"}, None),
        ("state", "reconnecting"),
        ("track", "video", None, "heygen-avatar"),
        ("track", "audio", None, None),  # lost with the connection
        ("state", "disconnected"),
    ]
    assert media.tracks == {"video": None, "audio": None}


async def test_a_failing_callback_is_logged_and_does_not_stop_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def on_data(message: dict[str, Any], identity: str | None) -> None:
        seen.append(message["type"])
        raise ValueError("app bug")

    media = LiveKitRoom(provider="heygen", on_data=on_data)
    room = rtc.Room()
    media.attach(room)
    with caplog.at_level(logging.ERROR):
        room.emit("data_received", packet({"type": "a"}))
        room.emit("data_received", packet({"type": "b"}))
    assert seen == ["a", "b"]
    assert "media callback" in caplog.text


async def test_connect_joins_with_auto_subscribe_and_reports_state(
    loopback_rooms: list[LoopbackRoom],
) -> None:
    media, rec = recorded_room()
    await media.connect("wss://127.0.0.1:7881", "viewer-jwt")
    room = loopback_rooms[0]
    assert room.joined is not None
    url, token, options = room.joined
    assert (url, token, options.auto_subscribe) == ("wss://127.0.0.1:7881", "viewer-jwt", True)
    assert media.connected
    await media.disconnect()
    await media.disconnect()  # idempotent
    assert [e for e in rec.events if e[0] == "state"] == [
        ("state", "connecting"),
        ("state", "connected"),
        ("state", "disconnected"),
    ]


async def test_a_real_join_of_an_unreachable_room_is_a_connection_error() -> None:
    media, _ = recorded_room()
    with pytest.raises(ProviderConnectionError, match=r"cannot join the LiveKit room at ws://"):
        await media.connect("ws://127.0.0.1:9", "viewer-jwt")
    assert media.state == "disconnected"
    assert media.room is None


# -- the renderer with media -----------------------------------------------------------------


def media_renderer(heygen: FakeHeyGen, **options: Any) -> HeyGenRenderer:
    return HeyGenRenderer(
        api_key=API_KEY,
        base_url=heygen.base_url,
        avatar_id=AVATAR,
        connect_media=True,
        keep_alive=False,
        lead_time=0.0,
        retry_backoff=0.0,
        **options,
    )


async def test_renderer_hands_tracks_and_state_to_callbacks(
    heygen: FakeHeyGen, loopback_rooms: list[LoopbackRoom]
) -> None:
    videos: list[Any] = []
    audios: list[Any] = []
    states: list[str] = []
    renderer = media_renderer(
        heygen,
        on_video_stream=videos.append,
        on_audio_stream=audios.append,
        on_state_change=states.append,
    )
    async with renderer:
        room = loopback_rooms[0]
        assert room.joined is not None
        assert room.joined[:2] == ("wss://127.0.0.1:7881", "lk-viewer-sess-0001")
        video, audio = video_track(), audio_track()
        room.emit("track_subscribed", video, None, participant())
        room.emit("track_subscribed", audio, None, participant())
        assert (videos, audios) == ([video], [audio])
    assert (videos, audios) == ([video, None], [audio, None])
    assert states == ["connecting", "connected", "disconnected"]
    assert heygen.open_sessions() == []


async def test_speak_text_returns_on_avatar_stop_talking(
    heygen: FakeHeyGen, loopback_rooms: list[LoopbackRoom]
) -> None:
    heygen.ms_per_char = 1000  # HeyGen's estimate: far longer than the avatar takes
    async with media_renderer(heygen) as renderer:
        room = loopback_rooms[0]
        done: list[str] = []

        async def speak(text: str) -> None:
            await renderer.speak_text(text)
            done.append(text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(speak, "First sentence.")
            with anyio.fail_after(5):
                while not heygen.ops("task"):  # noqa: ASYNC110 - server thread state
                    await anyio.sleep(0.01)
            room.emit(
                "data_received", packet({"type": "avatar_start_talking", "task_id": "task-1"})
            )
            room.emit("data_received", packet({"type": "avatar_talking_message", "message": "Fi"}))
            await anyio.sleep(0.05)
            assert done == []
            room.emit("data_received", packet({"type": "avatar_stop_talking", "task_id": "task-1"}))
            with anyio.fail_after(5):
                while not done:  # noqa: ASYNC110 - woken by the emitter above
                    await anyio.sleep(0.01)
        assert done == ["First sentence."]


async def test_queued_sentence_is_timed_from_its_real_start(
    heygen: FakeHeyGen, loopback_rooms: list[LoopbackRoom]
) -> None:
    heygen.ms_per_char = 20  # "Second one." -> 0.22 s
    async with media_renderer(heygen) as renderer:
        room = loopback_rooms[0]
        start = packet({"type": "avatar_start_talking", "task_id": "task-1"})
        room.emit("data_received", start)  # talking events flow: media timing is on
        room.emit("data_received", packet({"type": "avatar_stop_talking", "task_id": "task-1"}))
        async with anyio.create_task_group() as tg:
            finished = anyio.Event()

            async def speak() -> None:
                await renderer.speak_text("Second one.")
                finished.set()

            tg.start_soon(speak)
            # Not started yet: the estimate alone (0.22 s) does not end it.
            with anyio.move_on_after(0.5):
                await finished.wait()
            assert not finished.is_set()
            before = anyio.current_time()
            room.emit(
                "data_received", packet({"type": "avatar_start_talking", "task_id": "task-1"})
            )
            with anyio.fail_after(5):
                await finished.wait()
            assert anyio.current_time() - before >= 0.2


async def test_a_media_join_that_fails_stops_the_session(heygen: FakeHeyGen) -> None:
    # A real join attempt through the SDK; the trio case is in test_heygen_renderer.py.
    renderer = media_renderer(heygen)
    with pytest.raises(ProviderConnectionError, match="cannot join the LiveKit room"):
        await renderer.start()  # wss://127.0.0.1:7881: nothing listens there
    assert heygen.ops() == ["new", "start", "stop"]
    assert heygen.open_sessions() == []
