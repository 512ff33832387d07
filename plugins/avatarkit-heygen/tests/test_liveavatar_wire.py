"""LiveAvatar's wire as the published clients speak it (issue 15): readiness, tokens, event ids,
pings, server events, at-most-once audio, and what the fake accepts.

LITE runs over real HTTP and a real WebSocket against the fake on 127.0.0.1; FULL's room is
:class:`FakeRoom` behind the DataTransport seam (its participants join on a schedule).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError
from avatarkit.providers import AudioChunk
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_full import AGENT_IDENTITY, AVATAR_IDENTITY, RESPONSE_TOPIC
from avatarkit_heygen.liveavatar_testing import (
    API_KEY,
    FakeLiveAvatar,
    FakeRoom,
    session_token_payload,
)


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


def make(fake: FakeLiveAvatar, route: str, **options: Any) -> LiveAvatarRenderer:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "avatar_id": "av-1",
        "base_url": fake.base_url,
        "keep_alive": False,
        "request_timeout": 5.0,
        "connect_timeout": 5.0,
    }
    renderer = LiveAvatarRenderer(**(settings | options))
    renderer.configure_route(route)  # type: ignore[arg-type]
    return renderer


def full(fake: FakeLiveAvatar, room: FakeRoom, **options: Any) -> LiveAvatarRenderer:
    return make(fake, "text", transport=lambda: room, **options)


async def noise(seconds: float, *, chunk: float = 0.05, delay: float = 0.0) -> AsyncIterator[bytes]:
    """Random PCM: no two chunks alike, so a repeated one is visible."""
    step = int(24000 * chunk) * 2
    for _ in range(int(seconds / chunk)):
        if delay:
            await anyio.sleep(delay)
        yield os.urandom(step)


async def audio(seconds: float, **kw: Any) -> AsyncIterator[AudioChunk]:
    async for data in noise(seconds, **kw):
        yield AudioChunk(data, 24000)


# -- FULL: readiness ---------------------------------------------------------------------------


@pytest.mark.parametrize("late", ["agent", "heygen", "both"])
async def test_full_sends_nothing_before_both_participants_joined(
    fake: FakeLiveAvatar, late: str
) -> None:
    agent = "liveavatar-agent-sess-1"
    delays: dict[str, float | None] = {}
    if late in ("agent", "both"):
        delays[agent] = 1.0
    if late in ("heygen", "both"):
        delays["heygen"] = 0.5
    room = FakeRoom(seconds_per_word=0.001, join_delays=delays)
    async with full(fake, room) as renderer:
        assert room.participants == {"heygen", agent}
        with anyio.fail_after(5):
            await renderer.speak_text("Hello there.")
        await renderer.interrupt()
    assert room.published, "commands were sent"
    assert all(present == {"heygen", agent} for present in room.present_at_publish)
    assert room.lost == []


async def test_full_start_fails_clearly_when_the_agent_never_joins(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(join_delays={"liveavatar-agent-sess-1": None})
    renderer = full(fake, room, ready_timeout=0.3)
    with pytest.raises(ProviderConnectionError) as info:
        await renderer.start()
    message = str(info.value)
    assert "liveavatar-agent-sess-1" in message
    assert "0.3s" in message
    assert "heygen" not in message.split("missing:")[1].split(")")[0]
    assert room.published == []
    assert fake.only_session().stops == 1  # a failed start is stopped
    assert room.closed == 1


async def test_full_ready_participants_are_configurable(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(join_delays={"liveavatar-agent-sess-1": None}, seconds_per_word=0)
    async with full(fake, room, ready_participants=["heygen"]) as renderer:
        await renderer.speak_text("Hi.")  # sent, and lost: nobody said LiveAvatar needs it
    assert len(room.lost) == 1


def test_default_ready_participants_and_timeout_follow_the_web_sdk() -> None:
    renderer = LiveAvatarRenderer(api_key="k", avatar_id="a")
    assert renderer.options.ready_participants == ["heygen", "liveavatar-agent-{session_id}"]
    assert renderer.options.ready_participants == [AVATAR_IDENTITY, AGENT_IDENTITY]
    assert renderer.options.ready_timeout == 30.0


# -- FULL: which token -------------------------------------------------------------------------


async def test_full_auto_joins_with_the_agent_token_and_leaves_the_viewer_token(
    fake: FakeLiveAvatar,
) -> None:
    room = FakeRoom()
    async with full(fake, room) as renderer:
        assert room.connected_with == ("ws://127.0.0.1:9/livekit", "agent-sess-1")
        assert renderer.viewer is not None
        assert renderer.viewer.token == "viewer-sess-1"


async def test_full_auto_falls_back_to_the_client_token(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    fake.knobs.omit_start_fields = {"livekit_agent_token"}
    room = FakeRoom()
    async with full(fake, room) as renderer:
        assert room.connected_with == ("ws://127.0.0.1:9/livekit", "viewer-sess-1")
        assert renderer.viewer is None  # one identity cannot be in the room twice
    assert "no viewer page can join" in caplog.text


async def test_full_client_token_when_asked(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    async with full(fake, room, full_join_token="client") as renderer:
        assert room.connected_with == ("ws://127.0.0.1:9/livekit", "viewer-sess-1")
        assert renderer.viewer is None


async def test_full_agent_token_required_when_asked(fake: FakeLiveAvatar) -> None:
    fake.knobs.omit_start_fields = {"livekit_agent_token"}
    renderer = full(fake, FakeRoom(), full_join_token="agent")
    with pytest.raises(ProviderError, match="livekit_agent_token"):
        await renderer.start()
    assert fake.only_session().stops == 1


async def test_full_without_any_token_is_a_clear_error(fake: FakeLiveAvatar) -> None:
    fake.knobs.omit_start_fields = {"livekit_agent_token", "livekit_client_token"}
    renderer = full(fake, FakeRoom())
    with pytest.raises(ProviderError, match="livekit_client_token"):
        await renderer.start()
    assert fake.only_session().stops == 1


# -- FULL: events name their command in source_event_id ----------------------------------------


async def test_full_events_carry_their_own_id_and_the_commands(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=0.001)
    async with full(fake, room) as renderer:
        await renderer.speak_text("One two.")
    command = room.commands("avatar.speak_text")[0]
    assert [e["event_type"] for e in room.events] == ["avatar.speak_started", "avatar.speak_ended"]
    for event in room.events:
        assert event["source_event_id"] == command["event_id"]
        assert event["event_id"] != command["event_id"]


async def test_full_an_end_for_another_command_does_not_end_this_one(
    fake: FakeLiveAvatar,
) -> None:
    room = FakeRoom(seconds_per_word=1000)
    renderer = full(fake, room)
    returned = anyio.Event()

    async def say() -> None:
        await renderer.speak_text("A long sentence.")
        returned.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(say)
        await fake.wait_for(lambda: bool(room.commands("avatar.speak_text")))
        command = room.commands("avatar.speak_text")[0]
        # an event whose own event_id is the command's but whose source is another command
        room.emit(
            RESPONSE_TOPIC,
            {
                "event_type": "avatar.speak_ended",
                "event_id": command["event_id"],
                "source_event_id": "an-earlier-command",
            },
        )
        await anyio.sleep(0.1)
        assert not returned.is_set()
        room.emit(
            RESPONSE_TOPIC,
            {
                "event_type": "avatar.speak_ended",
                "event_id": "e-new",
                "source_event_id": command["event_id"],
            },
        )
        with anyio.fail_after(2):
            await returned.wait()


async def test_full_session_stopped_event_ends_the_session(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    async with full(fake, room) as renderer:
        room.emit(
            RESPONSE_TOPIC,
            {"event_type": "session.stopped", "event_id": "e", "stop_reason": "IDLE_TIMEOUT"},
        )
        assert renderer.state == "ended"
        assert "IDLE_TIMEOUT" in (renderer.end_reason or "")


# -- LITE: liveness ------------------------------------------------------------------------------


async def test_lite_sends_no_pings_and_survives_a_server_that_never_answers_them(
    fake: FakeLiveAvatar,
) -> None:
    fake.knobs.answer_pings = False
    async with make(fake, "audio") as renderer:
        await anyio.sleep(1.5)
        await renderer.speak(audio(0.3))
        assert renderer.state == "ready"
    session = fake.only_session()
    assert fake.pings == 0
    assert session.connections == 1


async def test_lite_pings_when_configured_and_the_fake_really_withholds_pongs(
    fake: FakeLiveAvatar,
) -> None:
    # the other side of the test above: with pings on, the stalled server costs the link
    fake.knobs.answer_pings = False
    renderer = make(fake, "audio", ws_ping_interval=0.1, ws_ping_timeout=0.1)
    async with renderer:
        await fake.wait_for(
            lambda: fake.only_session().connections >= 2 or renderer.state != "ready"
        )
    assert fake.pings >= 1


# -- LITE: server events -------------------------------------------------------------------------


async def test_lite_server_error_ends_speak_with_a_clear_error_at_once(
    fake: FakeLiveAvatar,
) -> None:
    fake.knobs.error_after_speaks = 1
    failures: list[BaseException] = []
    ended = anyio.Event()

    async with make(fake, "audio", speak_timeout_grace=30) as renderer:

        async def speak() -> None:
            try:
                await renderer.speak(audio(30.0, chunk=0.05, delay=0.01))  # slower than it plays
            except ProviderError as exc:
                failures.append(exc)
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(speak)
            await fake.wait_for(lambda: any(e["type"] == "error" for e in fake.sent), 10)
            with anyio.fail_after(5):  # from LiveAvatar's error to speak() raising
                await ended.wait()
        (failure,) = failures
        assert "LiveAvatar reported an error" in str(failure)
        assert "bad audio chunk" in str(failure)
        assert renderer.state == "ready"  # an error ends the utterance, not the session
        failed = fake.messages("agent.speak")[0].message["event_id"]
        await renderer.speak(audio(0.2))  # and the next utterance works
    # The rest of that audio is not sent: nothing of it follows the next utterance's first
    # message on the (ordered) socket. Counting what the fake has read when speak() raised
    # would race a message still in flight then, which a loaded machine delivers late.
    ids = [r.message["event_id"] for r in fake.messages("agent.speak")]
    assert ids[-1] != failed
    assert failed not in ids[ids.index(ids[-1]) :]


async def test_lite_error_while_idle_is_logged(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    async with make(fake, "audio") as renderer:
        fake.send({"type": "error", "error": "something broke"})
        await anyio.sleep(0.1)
        await renderer.speak(audio(0.2))
    assert "something broke" in caplog.text


async def test_lite_warning_is_logged(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    fake.knobs.warning_on_connect = True
    async with make(fake, "audio") as renderer:
        await renderer.speak(audio(0.2))
    assert "LiveAvatar warns: low bandwidth" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


async def test_lite_agent_state_listening_ends_speak_without_speak_ended(
    fake: FakeLiveAvatar,
) -> None:
    fake.knobs.send_speak_ended = False
    renderer = make(fake, "audio", speak_timeout_grace=30)
    async with renderer:
        session_sent = len(fake.sent)
        task_done = anyio.Event()

        async def speak() -> None:
            await renderer.speak(audio(0.2))
            task_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(speak)
            await fake.wait_for(lambda: bool(fake.messages("agent.speak_end")))
            await anyio.sleep(0.1)
            assert not task_done.is_set()  # no speak_ended: still waiting
            fake.send(
                {
                    "type": "agent.state_updated",
                    "previous_state": "talking",
                    "new_state": "listening",
                }
            )
            with anyio.fail_after(5):
                await task_done.wait()
        assert any(e.get("new_state") == "talking" for e in fake.sent[session_sent:])


async def test_lite_idle_between_chunks_does_not_end_speak(fake: FakeLiveAvatar) -> None:
    # the avatar may run dry while the TTS is slow: idle before speak_end means nothing
    fake.knobs.send_speak_ended = False
    renderer = make(fake, "audio", speak_timeout_grace=30, first_chunk_seconds=0)
    release = anyio.Event()
    done = anyio.Event()

    async def slow() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(os.urandom(4800), 24000)
        await release.wait()
        yield AudioChunk(os.urandom(4800), 24000)

    async def speak() -> None:
        await renderer.speak(slow())
        done.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await fake.wait_for(lambda: bool(fake.messages("agent.speak")))
        fake.send({"type": "agent.state_updated", "previous_state": "talking", "new_state": "idle"})
        await anyio.sleep(0.2)
        assert not done.is_set()
        release.set()
        await fake.wait_for(lambda: bool(fake.messages("agent.speak_end")))
        fake.send({"type": "agent.state_updated", "previous_state": "talking", "new_state": "idle"})
        with anyio.fail_after(5):
            await done.wait()


async def test_lite_unsolicited_audio_buffer_cleared_ends_speak(fake: FakeLiveAvatar) -> None:
    fake.knobs.send_speak_ended = False
    renderer = make(fake, "audio", speak_timeout_grace=30)
    done = anyio.Event()

    async def speak() -> None:
        await renderer.speak(audio(0.2))
        done.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await fake.wait_for(lambda: bool(fake.messages("agent.speak_end")))
        fake.send({"type": "agent.audio_buffer_cleared", "event_id": "server"})
        with anyio.fail_after(5):
            await done.wait()


async def test_lite_late_events_of_an_interrupted_utterance_leave_the_next_alone(
    fake: FakeLiveAvatar,
) -> None:
    fake.knobs.playback = 1.0  # speak_ended comes when the audio would have played
    renderer = make(fake, "audio")
    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, audio(30.0, chunk=0.05, delay=0.01))
        await fake.wait_for(lambda: len(fake.messages("agent.speak")) >= 2)
        old = fake.messages("agent.speak")[0].message["event_id"]
        await renderer.interrupt()
        # the old utterance's speak_interrupted and audio_buffer_cleared arrive while the next
        # utterance is being spoken, and again after: neither may end it
        with anyio.fail_after(5):
            await renderer.speak(audio(0.6))
            tg.cancel_scope.cancel()
    new = fake.messages("agent.speak_end")[-1].message["event_id"]
    assert new != old
    assert new in fake.ended_sent  # it returned on its own speak_ended


# -- LITE: a reconnect never repeats audio -------------------------------------------------------


@pytest.mark.parametrize("drop_after", [1, 2, 3, 5])
async def test_lite_a_reconnect_never_repeats_audio(fake: FakeLiveAvatar, drop_after: int) -> None:
    fake.knobs.drop_after_speaks = drop_after
    sent: list[bytes] = []

    async def recorded() -> AsyncIterator[AudioChunk]:
        async for data in noise(1.0, chunk=0.05, delay=0.01):
            sent.append(data)
            yield AudioChunk(data, 24000)

    renderer = make(fake, "audio", chunk_seconds=0.05, first_chunk_seconds=0)
    async with renderer:
        with anyio.fail_after(10):
            try:
                await renderer.speak(recorded())
            except ProviderConnectionError as exc:  # abandoning the utterance is fine too
                assert "dropped" in str(exc)  # noqa: PT017
        await renderer.speak(audio(0.1))  # the next utterance goes out on the new socket
    assert fake.only_session().connections == 2
    received = [base64.b64decode(r.message["audio"]) for r in fake.messages("agent.speak")]
    spoken = [chunk for chunk in received if chunk in sent]
    assert len(spoken) == len(set(spoken)), "a chunk of audio reached LiveAvatar twice"
    # what arrived is the sent audio in order, some of it possibly lost to the drop
    order = [sent.index(chunk) for chunk in spoken]
    assert order == sorted(order)


# -- the fake accepts what the official clients send ---------------------------------------------


async def test_fake_session_token_is_a_jwt_carrying_the_mode(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    async with full(fake, room):
        token = fake.only_session().token
    payload = session_token_payload(token)
    assert payload["start_session_data"]["mode"] == "FULL"
    assert payload["session_id"] == "sess-1"
    assert token.count(".") == 2


def test_fake_stop_with_only_the_bearer_token(fake: FakeLiveAvatar) -> None:
    with httpx.Client(base_url=fake.base_url) as client:
        answer = client.post(
            "/v1/sessions/token",
            headers={"X-API-KEY": API_KEY},
            json={"mode": "LITE", "avatar_id": "a"},
        ).json()["data"]
        auth = {"Authorization": f"Bearer {answer['session_token']}"}
        assert client.post("/v1/sessions/start", headers=auth).status_code == 200
        stop = client.post("/v1/sessions/stop", headers=auth)  # no body, as the web SDK sends
        assert stop.status_code == 200
        assert stop.json()["code"] == 1000
    session = fake.only_session()
    assert session.state == "stopped"
    assert session.stop_bodies == [None]


@pytest.mark.parametrize("bad", ["liveavatar-agent-{sid}", "x-{0}", "{"])
def test_ready_participants_accept_only_session_id_placeholders(bad: str) -> None:
    with pytest.raises(ConfigError, match="session_id"):
        LiveAvatarRenderer(api_key="k", avatar_id="a", ready_participants=["heygen", bad])


def test_fake_room_can_be_built_outside_an_event_loop() -> None:
    room = FakeRoom(join_delays={"heygen": 1.0})
    assert room.participants == set()


# -- FULL: voice_agent (LiveAvatar's API reference: avatar_persona is deprecated) --------------


async def test_full_voice_agent_replaces_the_inline_persona(fake: FakeLiveAvatar) -> None:
    room = FakeRoom()
    async with full(fake, room, voice_agent_id="va-7", language="fr"):
        body = fake.only_session().body
    assert body["voice_agent"] == {"id": "va-7", "language": "fr"}
    assert "avatar_persona" not in body


def test_voice_agent_and_an_inline_persona_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="voice_agent_id"):
        LiveAvatarRenderer(api_key="k", avatar_id="a", voice_agent_id="va", voice_id="v")


def test_fake_rejects_voice_agent_with_avatar_persona(fake: FakeLiveAvatar) -> None:
    with httpx.Client(base_url=fake.base_url) as client:
        answer = client.post(
            "/v1/sessions/token",
            headers={"X-API-KEY": API_KEY},
            json={
                "mode": "FULL",
                "avatar_id": "a",
                "voice_agent": {"id": "va"},
                "avatar_persona": {"voice_id": "v"},
            },
        )
    assert answer.status_code == 422
    assert "mutually exclusive" in answer.json()["message"]


async def test_fake_lite_events_have_the_documented_shapes(fake: FakeLiveAvatar) -> None:
    async with make(fake, "audio") as renderer:
        await renderer.speak(audio(0.3))
    (end,) = fake.messages("agent.speak_end")
    kinds = [e["type"] for e in fake.sent]
    assert kinds.index("agent.speak_started") < kinds.index("agent.speak_ended")
    started = next(e for e in fake.sent if e["type"] == "agent.speak_started")
    ended = next(e for e in fake.sent if e["type"] == "agent.speak_ended")
    # LiveAvatar's LITE events page: {"event_id", "task": {"id"}}, the id of the agent.speak
    assert started["event_id"] == ended["event_id"] == end.message["event_id"]
    assert started["task"] == ended["task"]
    assert isinstance(started["task"]["id"], str)
    states = [e for e in fake.sent if e["type"] == "agent.state_updated"]
    assert [(e["previous_state"], e["new_state"]) for e in states] == [
        ("listening", "talking"),
        ("talking", "listening"),
    ]


async def test_full_server_error_ends_speak_text_at_once(fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=1000)
    renderer = full(fake, room, speak_timeout_grace=30)
    async with renderer:

        async def fail_soon() -> None:
            await fake.wait_for(lambda: bool(room.commands("avatar.speak_text")))
            command = room.commands("avatar.speak_text")[0]
            room.emit(
                RESPONSE_TOPIC,
                {
                    "event_type": "error",
                    "event_id": "e1",
                    "source_event_id": command["event_id"],
                    "message": "text too long",
                },
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail_soon)
            with anyio.fail_after(1), pytest.raises(ProviderError, match="text too long"):
                await renderer.speak_text("A sentence that will fail.")


async def test_full_speech_liveavatar_started_itself_does_not_end_ours(
    fake: FakeLiveAvatar,
) -> None:
    # FULL runs LiveAvatar's own pipeline too: an avatar.speak_ended with source_event_id null
    # is about speech no command of ours started
    room = FakeRoom(seconds_per_word=1000)
    renderer = full(fake, room)
    returned = anyio.Event()

    async def say() -> None:
        await renderer.speak_text("Ours.")
        returned.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(say)
        await fake.wait_for(lambda: bool(room.commands("avatar.speak_text")))
        null = {"event_type": "avatar.speak_ended", "event_id": "e9", "source_event_id": None}
        room.emit(RESPONSE_TOPIC, null)
        await anyio.sleep(0.1)
        assert not returned.is_set()
        await renderer.interrupt()


async def test_lite_error_about_a_finished_utterance_leaves_the_next_alone(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    fake.knobs.playback = 1.0
    async with make(fake, "audio") as renderer:
        await renderer.speak(audio(0.1))
        old = fake.messages("agent.speak_end")[0].message["event_id"]

        async def late_error() -> None:
            await fake.wait_for(lambda: len(fake.messages("agent.speak_end")) == 2)
            fake.send({"type": "error", "event_id": old, "error": "late complaint"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(late_error)
            await renderer.speak(audio(0.3))  # returns on its own speak_ended, no error
    assert "late complaint" in caplog.text


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_full_never_sends_before_both_joined_whatever_the_join_order(backend: str) -> None:
    """Any join times (either first, either late, together) and any number of sentences: every
    command found both participants in the room, none was lost, every sentence ended."""
    with FakeLiveAvatar() as fake:

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            avatar=st.floats(0, 0.2),
            agent=st.floats(0, 0.2),
            sentences=st.lists(st.sampled_from(["Hi.", "Two words.", "A b c d."]), max_size=3),
        )
        def check(avatar: float, agent: float, sentences: list[str]) -> None:
            async def run() -> None:
                sid = f"sess-{len(fake.sessions) + 1}"
                room = FakeRoom(
                    seconds_per_word=0.001,
                    join_delays={"heygen": avatar, f"liveavatar-agent-{sid}": agent},
                )
                async with full(fake, room) as renderer:
                    for sentence in sentences:
                        with anyio.fail_after(5):
                            await renderer.speak_text(sentence)
                    await renderer.interrupt()
                everyone = {"heygen", f"liveavatar-agent-{sid}"}
                assert all(present == everyone for present in room.present_at_publish)
                assert room.lost == []
                assert [c["text"] for c in room.commands("avatar.speak_text")] == sentences
                assert len([e for e in room.events if e["event_type"] == "avatar.speak_ended"]) == (
                    len(sentences)
                )

            anyio.run(run, backend=backend)

        check()
