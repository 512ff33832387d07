"""The liveavatar renderer driven directly, against the fake LiveAvatar on 127.0.0.1.

LITE mode goes over real HTTP and a real WebSocket (httpx + httpx-ws, as in production).
"""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from avatarkit.errors import (
    ConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    SessionError,
)
from avatarkit.providers import AudioChunk, ViewerConnection, renderer_capabilities
from avatarkit.testing import tone
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_audio import MAX_MESSAGE_BYTES, speak_payloads
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar

from .conftest import cancelled_once


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


def make(fake: FakeLiveAvatar, route: str = "audio", **options: Any) -> LiveAvatarRenderer:
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


async def chunks(
    seconds: float, rate: int = 24000, *, chunk: float = 0.1, delay: float = 0.0
) -> AsyncIterator[AudioChunk]:
    pcm = tone(seconds, rate)
    step = int(rate * chunk) * 2
    for i in range(0, len(pcm), step):
        if delay:
            await anyio.sleep(delay)
        yield AudioChunk(pcm[i : i + step], rate)


def noise(seconds: float, *, seed: int) -> bytes:
    return random.Random(seed).randbytes(int(seconds * 24000) * 2)


async def pcm_chunks(
    pcm: bytes, *, chunk: float = 0.1, delay: float = 0.0
) -> AsyncIterator[AudioChunk]:
    step = int(24000 * chunk) * 2
    for i in range(0, len(pcm), step):
        if delay:
            await anyio.sleep(delay)
        yield AudioChunk(pcm[i : i + step], 24000)


# -- capabilities and options ---------------------------------------------------------------------


def test_has_both_capabilities_and_wants_24k() -> None:
    caps = renderer_capabilities(LiveAvatarRenderer)
    assert caps.text
    assert caps.audio
    assert LiveAvatarRenderer.sample_rate == 24000


def test_options_are_validated_with_a_clear_error(fake: FakeLiveAvatar) -> None:
    with pytest.raises(ConfigError, match="quality"):
        LiveAvatarRenderer(api_key=API_KEY, avatar_id="a", quality="ultra")
    with pytest.raises(ConfigError, match="avatar_id"):
        LiveAvatarRenderer(api_key=API_KEY)
    with pytest.raises(ConfigError, match="voice"):
        LiveAvatarRenderer(api_key=API_KEY, avatar_id="a", voice="x")


def test_key_never_in_repr(fake: FakeLiveAvatar) -> None:
    renderer = make(fake)
    assert API_KEY not in repr(renderer)
    assert API_KEY not in repr(renderer.options)


async def test_configure_route(fake: FakeLiveAvatar) -> None:
    renderer = make(fake, route="text")
    assert renderer.mode == "FULL"
    renderer.configure_route("audio")
    assert renderer.mode == "LITE"
    with pytest.raises(ValueError, match="route"):
        renderer.configure_route("video")  # type: ignore[arg-type]
    async with renderer:
        with pytest.raises(SessionError, match="before start"):
            renderer.configure_route("text")
        with pytest.raises(SessionError, match="LITE mode"):
            await renderer.speak_text("Hello.")


# -- lifecycle ------------------------------------------------------------------------------------


async def test_token_start_connect_then_stop_once(fake: FakeLiveAvatar) -> None:
    renderer = make(fake)
    assert renderer.viewer is None
    async with renderer:
        session = fake.only_session()
        assert session.mode == "LITE"
        assert session.body["avatar_id"] == "av-1"
        assert session.body["video_settings"] == {"encoding": "H264", "quality": "high"}
        assert "avatar_persona" not in session.body
        assert renderer.viewer == ViewerConnection(
            "ws://127.0.0.1:9/livekit", f"viewer-{session.session_id}", session.session_id
        )
        assert renderer.state == "ready"
        assert session.connections == 1
    assert fake.paths() == ["/v1/sessions/token", "/v1/sessions/start", "/v1/sessions/stop"]
    _, headers, body = fake.requests[2]
    assert headers["authorization"] == f"Bearer {session.token}"
    assert body == {"session_id": session.session_id}
    assert session.stops == 1
    assert renderer.state == "closed"
    assert renderer.viewer is None
    await renderer.close()  # idempotent
    assert session.stops == 1


async def test_on_connection_gets_the_viewer(fake: FakeLiveAvatar) -> None:
    seen: list[ViewerConnection] = []

    async def connected(viewer: ViewerConnection) -> None:
        seen.append(viewer)

    async with make(fake, on_connection=connected) as renderer:
        assert seen == [renderer.viewer]
    assert "viewer-" not in repr(seen[0])  # the token is masked in reprs


async def test_full_mode_token_carries_the_persona(fake: FakeLiveAvatar) -> None:
    from avatarkit_heygen.liveavatar_testing import FakeRoom

    renderer = make(
        fake,
        route="text",
        voice_id="v-9",
        language="de",
        sandbox=True,
        max_session_duration=120,
        transport=FakeRoom,
    )
    async with renderer:
        body = fake.only_session().body
    assert body["mode"] == "FULL"
    assert body["avatar_persona"] == {"voice_id": "v-9", "language": "de"}
    assert body["is_sandbox"] is True
    assert body["max_session_duration"] == 120


async def test_stopped_after_an_exception(fake: FakeLiveAvatar) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with make(fake):
            raise RuntimeError("boom")
    assert fake.only_session().stops == 1


async def test_stopped_after_cancellation(fake: FakeLiveAvatar) -> None:
    renderer = make(fake)
    with anyio.CancelScope() as scope:
        async with renderer:
            scope.cancel()
            await anyio.sleep(10)
    assert fake.only_session().stops == 1


async def test_stopped_when_cancelled_during_start(fake: FakeLiveAvatar) -> None:
    fake.knobs.connect_delay = 10  # the WebSocket never says "connected"
    renderer = make(fake)
    async with cancelled_once(lambda: "/v1/sessions/start" in fake.paths()) as scope:
        await renderer.start()
    assert scope.cancelled_caught
    assert fake.only_session().stops == 1
    assert renderer.state == "closed"


async def test_cancelled_while_the_token_is_created_still_stops(fake: FakeLiveAvatar) -> None:
    fake.knobs.delay["/v1/sessions/token"] = 0.3  # the session exists before we hear of it
    renderer = make(fake)
    async with cancelled_once(lambda: bool(fake.paths())) as scope:  # the token is asked for
        await renderer.start()
    assert scope.cancelled_caught
    assert fake.paths() == ["/v1/sessions/token", "/v1/sessions/stop"]
    assert fake.only_session().stops == 1


async def test_failed_start_stops_the_session(fake: FakeLiveAvatar) -> None:
    fake.knobs.status["/v1/sessions/start"] = (500, '{"message": "avatar failed to join"}')
    renderer = make(fake)
    with pytest.raises(ProviderHTTPError, match="avatar failed to join") as info:
        await renderer.start()
    assert info.value.status_code == 500
    assert info.value.retryable
    assert fake.paths()[-1] == "/v1/sessions/stop"
    assert renderer.state == "closed"


async def test_websocket_refused_at_start_stops_the_session(fake: FakeLiveAvatar) -> None:
    fake.knobs.connect_delay = 0.5
    renderer = make(fake, connect_timeout=0.1)
    with pytest.raises(ProviderConnectionError, match="did not report 'connected'"):
        await renderer.start()
    assert fake.only_session().stops == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, '{"message": "Invalid API key"}', "Invalid API key.*check renderer.api_key"),
        (402, '{"detail": "Insufficient credits"}', "Insufficient credits.*plan"),
        (403, '{"error": {"message": "Concurrent limit reached"}}', "Concurrent limit.*plan"),
        (429, '{"message": "Too many requests"}', "Too many requests.*rate limited"),
        (502, "<html><body>Bad gateway</body></html>", "Bad gateway.*server error"),
    ],
)
async def test_http_errors_are_clear(
    fake: FakeLiveAvatar, status: int, body: str, expected: str
) -> None:
    fake.knobs.status["/v1/sessions/token"] = (status, body)
    renderer = make(fake)
    with pytest.raises(ProviderHTTPError, match=expected) as info:
        await renderer.start()
    assert info.value.status_code == status
    assert info.value.provider == "liveavatar"
    assert info.value.retryable == (status in (429, 502))
    assert API_KEY not in str(info.value)
    assert "/v1/sessions/stop" not in fake.paths()  # no session was created


async def test_bad_key_against_the_fake(fake: FakeLiveAvatar) -> None:
    renderer = make(fake, api_key="wrong-key-123")
    with pytest.raises(ProviderHTTPError, match=r"401.*Invalid API key") as info:
        await renderer.start()
    assert "wrong-key-123" not in str(info.value)


async def test_unreachable_api_is_a_connection_error() -> None:
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there now
    renderer = LiveAvatarRenderer(
        api_key=API_KEY, avatar_id="a", base_url=f"http://127.0.0.1:{port}"
    )
    with pytest.raises(ProviderConnectionError, match="cannot reach"):
        await renderer.start()


async def test_stop_of_an_already_ended_session_is_success(
    fake: FakeLiveAvatar, caplog: Any
) -> None:
    renderer = make(fake)
    async with renderer:
        fake.only_session().state = "stopped"  # ended on LiveAvatar's side, silently
    assert fake.only_session().stops == 1
    assert "could not stop" not in caplog.text


async def test_stop_retries_with_the_api_key(fake: FakeLiveAvatar) -> None:
    renderer = make(fake)
    async with renderer:
        fake.only_session().token = "rotated"  # the session token no longer works
    _, headers, _ = fake.requests[-1]
    assert headers["x-api-key"] == API_KEY
    assert fake.only_session().stops == 1


# -- LITE: speaking -------------------------------------------------------------------------------


async def test_speak_streams_pcm24k_and_waits_for_speak_ended(fake: FakeLiveAvatar) -> None:
    fake.knobs.send_speak_ended = False
    renderer = make(fake, chunk_seconds=0.5)
    returned = anyio.Event()

    async def speak() -> None:
        await renderer.speak(chunks(1.3))
        returned.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await fake.wait_for(lambda: bool(fake.messages("agent.speak_end")))
        await anyio.sleep(0.05)
        assert not returned.is_set()  # still waiting for the avatar
        event_id = fake.messages("agent.speak_end")[0].message["event_id"]
        fake.send({"type": "agent.speak_ended", "event_id": event_id})
        with anyio.fail_after(5):
            await returned.wait()
    speaks = fake.messages("agent.speak")
    assert {r.message["event_id"] for r in speaks} == {event_id}
    assert fake.audio(event_id) == tone(1.3, 24000)
    assert all(len(base64.b64decode(r.message["audio"])) <= 24000 for r in speaks)
    assert len(fake.messages("agent.speak_end")) == 1
    assert fake.violations == []


@pytest.mark.parametrize("first", [0.0, 0.4])
async def test_first_audio_goes_out_before_the_tts_finishes(
    fake: FakeLiveAvatar, first: float
) -> None:
    renderer = make(fake, first_chunk_seconds=first)
    release = anyio.Event()

    async def slow_tts() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(tone(0.05, 24000), 24000)
        if first:  # up to first_chunk_seconds is gathered before the first message
            yield AudioChunk(tone(first, 24000), 24000)
        await release.wait()
        yield AudioChunk(tone(0.05, 24000), 24000)

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, slow_tts())
        await fake.wait_for(lambda: len(fake.messages("agent.speak")) == 1)
        assert not fake.messages("agent.speak_end")
        release.set()
    assert len(fake.messages("agent.speak_end")) == 1


async def test_fast_tts_is_batched_into_messages_of_about_chunk_seconds(
    fake: FakeLiveAvatar,
) -> None:
    renderer = make(fake, chunk_seconds=1.0)
    async with renderer:
        await renderer.speak(chunks(4.0, chunk=0.02))
    sizes = [len(base64.b64decode(r.message["audio"])) for r in fake.messages("agent.speak")]
    assert sum(sizes) == 4.0 * 48000
    assert max(sizes) <= 48000
    # the first message is first_chunk_seconds (0.4 s, as LiveAvatar's web SDK sends), the
    # rest is mostly whole seconds
    assert sizes[0] == 0.4 * 48000
    assert sizes.count(48000) >= 2


async def test_short_audio_is_sent_whole_though_under_first_chunk_seconds(
    fake: FakeLiveAvatar,
) -> None:
    async with make(fake, first_chunk_seconds=1.0) as renderer:
        await renderer.speak(chunks(0.3, chunk=0.1))
    assert [len(base64.b64decode(r.message["audio"])) for r in fake.messages("agent.speak")] == [
        0.3 * 48000
    ]


async def test_other_rates_and_stereo_are_converted(fake: FakeLiveAvatar) -> None:
    renderer = make(fake)

    async def stereo_22k() -> AsyncIterator[AudioChunk]:
        mono = tone(0.5, 22050)
        frames = [mono[i : i + 2] * 2 for i in range(0, len(mono), 2)]
        yield AudioChunk(b"".join(frames), 22050, channels=2)

    async with renderer:
        await renderer.speak(stereo_22k())
    event_id = fake.messages("agent.speak_end")[0].message["event_id"]
    assert abs(len(fake.audio(event_id)) / 48000 - 0.5) < 0.005


async def test_speak_gives_up_waiting_after_duration_plus_grace(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    fake.knobs.send_speak_ended = False
    renderer = make(fake, speak_timeout_grace=0.1)
    async with renderer:
        with anyio.fail_after(5):
            await renderer.speak(chunks(0.2))
    assert "no speak_ended" in caplog.text


async def test_empty_audio_sends_nothing(fake: FakeLiveAvatar) -> None:
    async def nothing() -> AsyncIterator[AudioChunk]:
        return
        yield

    async with make(fake) as renderer:
        await renderer.speak(nothing())
    assert fake.messages("agent.speak") == []
    assert fake.messages("agent.speak_end") == []


async def test_tts_error_reaches_the_caller_unwrapped(fake: FakeLiveAvatar) -> None:
    async def failing() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(tone(0.1, 24000), 24000)
        raise ProviderTimeout("tts stalled", provider="fake-tts")

    async with make(fake) as renderer:
        with pytest.raises(ProviderTimeout, match="tts stalled"):
            await renderer.speak(failing())
    assert fake.only_session().stops == 1


async def test_interrupt_returns_at_once_and_no_audio_follows(fake: FakeLiveAvatar) -> None:
    renderer = make(fake)
    returned = anyio.Event()

    async def speak() -> None:
        await renderer.speak(chunks(30.0, chunk=0.05, delay=0.01))  # slower than it plays
        returned.set()

    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await fake.wait_for(lambda: len(fake.messages("agent.speak")) >= 3)
        await renderer.interrupt()
        with anyio.fail_after(2):
            await returned.wait()
        await fake.wait_for(lambda: bool(fake.messages("agent.interrupt")))
        await anyio.sleep(0.1)  # anything sent late would arrive by now
    kinds = [r.type for r in fake.received]
    cut = kinds.index("agent.interrupt")
    assert "agent.speak" in kinds[:cut]
    assert "agent.speak" not in kinds[cut:]
    assert "agent.speak_end" not in kinds
    # with an event_id, as the web SDK, LiveKit's and Pipecat's clients send it
    interrupt = fake.messages("agent.interrupt")[0].message
    assert set(interrupt) == {"type", "event_id"}
    assert isinstance(interrupt["event_id"], str)
    assert interrupt["event_id"]


async def test_interrupt_while_waiting_for_speak_ended(fake: FakeLiveAvatar) -> None:
    fake.knobs.send_speak_ended = False
    renderer = make(fake)
    async with renderer, anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, chunks(0.5))
        await fake.wait_for(lambda: bool(fake.messages("agent.speak_end")))
        with anyio.fail_after(2):
            await renderer.interrupt()
            # speak returned: the task group can exit
    assert len(fake.messages("agent.interrupt")) == 1


async def test_utterances_get_their_own_event_ids(fake: FakeLiveAvatar) -> None:
    async with make(fake) as renderer:
        await renderer.speak(chunks(0.3))
        await renderer.speak(chunks(0.3))
    ends = [r.message["event_id"] for r in fake.messages("agent.speak_end")]
    assert len(ends) == 2
    assert len(set(ends)) == 2
    for event_id in ends:
        assert len(fake.audio(event_id)) == 0.3 * 48000


# -- LITE: server messages, keep-alive, drops, session end --------------------------------------


async def test_malformed_and_unknown_messages_are_ignored(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="avatarkit_heygen")
    fake.knobs.noise = True
    async with make(fake) as renderer:
        fake.send({"type": "agent.speak_ended", "event_id": "nobody"})
        fake.send({"type": "agent.something_new", "x": 1})
        await renderer.speak(chunks(0.2))
    assert "non-JSON" in caplog.text
    assert "no type" in caplog.text
    assert "ignoring agent.something_new" in caplog.text
    assert fake.violations == []


async def test_keep_alive_while_idle(fake: FakeLiveAvatar) -> None:
    async with make(fake, keep_alive=True, keep_alive_interval=0.05):
        await fake.wait_for(lambda: len(fake.messages("session.keep_alive")) >= 3)
    for received in fake.messages("session.keep_alive"):
        assert set(received.message) == {"type", "event_id"}


async def test_no_keep_alive_when_disabled(fake: FakeLiveAvatar) -> None:
    async with make(fake, keep_alive=False) as renderer:
        await renderer.speak(chunks(0.1))
        await anyio.sleep(0.3)
    assert fake.messages("session.keep_alive") == []


async def test_websocket_drop_mid_utterance_fails_it_and_reconnects_once(
    fake: FakeLiveAvatar,
) -> None:
    """Audio sent to the dead socket is lost: the utterance fails with a clear error (not a
    silent gap), none of it is resent on the new socket (no frame twice), the next one plays."""
    fake.knobs.drop_after_speaks = 2
    renderer = make(fake, chunk_seconds=0.1)
    one, two = noise(1.0, seed=1), noise(0.2, seed=2)  # no two frames alike
    async with renderer:
        with anyio.fail_after(10), pytest.raises(ProviderConnectionError, match="mid-utterance"):
            await renderer.speak(pcm_chunks(one, chunk=0.05, delay=0.01))
        assert renderer.state == "ready"
        await renderer.speak(pcm_chunks(two))
    session = fake.only_session()
    assert session.connections == 2
    speaks = fake.messages("agent.speak")
    first, second = speaks[0].message["event_id"], speaks[-1].message["event_id"]
    assert first != second
    assert {r.connection for r in speaks if r.message["event_id"] == first} == {1}
    assert {r.connection for r in speaks if r.message["event_id"] == second} == {2}
    received = fake.audio(first)  # what arrived of the failed one: a prefix, nothing twice
    assert 0 < len(received) < len(one)
    assert one.startswith(received)
    ends = fake.messages("agent.speak_end")
    assert [(r.connection, r.message["event_id"]) for r in ends] == [(2, second)]
    assert fake.audio(second) == two
    assert session.stops == 1


async def test_websocket_drop_after_the_session_died_ends_the_turn(
    fake: FakeLiveAvatar,
) -> None:
    renderer = make(fake, chunk_seconds=0.1)

    async with renderer:
        session = fake.only_session()

        async def cut_after_first_audio() -> None:
            await fake.wait_for(lambda: bool(fake.messages("agent.speak")))
            session.refuse_reconnect = True  # LiveAvatar lost the session too
            fake.drop_connections()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cut_after_first_audio)
            with pytest.raises(ProviderConnectionError, match="session") as info:
                await renderer.speak(chunks(5.0, chunk=0.05, delay=0.01))
        assert "reconnect" in str(info.value) or "ended" in str(info.value)
        assert renderer.state == "ended"
        with pytest.raises(ProviderConnectionError, match="has ended"):
            await renderer.speak(chunks(0.1))
    assert session.stops == 1


async def test_session_ended_by_liveavatar_is_reported_not_raised(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = make(fake)
    async with renderer:
        fake.end_session(fake.only_session().session_id)
        with anyio.fail_after(5):
            await renderer.session_ended.wait()
        assert renderer.state == "ended"
        assert "closed" in (renderer.end_reason or "")
        with pytest.raises(ProviderConnectionError, match="start a new session"):
            await renderer.speak(chunks(0.1))
    assert "ended" in caplog.text
    assert fake.only_session().stops == 1  # stopping an ended session is fine


async def test_max_session_duration_ends_the_session(fake: FakeLiveAvatar) -> None:
    fake.knobs.max_session_duration = 1
    renderer = make(fake)
    async with renderer:
        with anyio.fail_after(5):
            await renderer.session_ended.wait()
        assert "maximum duration" in (renderer.end_reason or "")
        assert renderer.state == "ended"


def test_fake_records_json(fake: FakeLiveAvatar) -> None:
    # the fake itself rejects a request without a key, as LiveAvatar does
    import httpx

    response = httpx.post(f"{fake.base_url}/v1/sessions/token", json={"mode": "LITE"})
    assert response.status_code == 401
    assert json.loads(response.text)["message"] == "Invalid API key"


async def test_lite_start_without_ws_url_is_a_clear_error(fake: FakeLiveAvatar) -> None:
    body = {"code": 1000, "data": {"session_id": "sess-1", "livekit_url": "ws://127.0.0.1:9"}}
    fake.knobs.status["/v1/sessions/start"] = (200, json.dumps(body))
    with pytest.raises(ProviderError, match=r"without a ws_url.*prefer: text"):
        await make(fake).start()
    assert fake.only_session().stops == 1


async def test_an_answer_without_data_is_a_clear_error(fake: FakeLiveAvatar) -> None:
    fake.knobs.status["/v1/sessions/token"] = (200, '{"code": 4001, "message": "avatar busy"}')
    with pytest.raises(ProviderError, match="avatar busy"):
        await make(fake).start()


def test_speak_payloads_stay_under_the_message_limit() -> None:
    pcm = bytes(48000 * 30)  # 30 s
    assert [len(base64.b64decode(p)) for p in speak_payloads(pcm, 1.0)] == [48000] * 30
    huge = speak_payloads(pcm, 1000.0)
    assert all(len(p) < MAX_MESSAGE_BYTES - 1000 for p in huge)
    assert b"".join(base64.b64decode(p) for p in huge) == pcm
    assert all(len(base64.b64decode(p)) % 2 == 0 for p in huge)  # whole samples


async def test_a_hanging_stop_is_bounded_and_reported(
    fake: FakeLiveAvatar, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = make(fake, request_timeout=0.2)
    await renderer.start()
    fake.knobs.delay["/v1/sessions/stop"] = 1.0
    with anyio.fail_after(5):
        await renderer.close()
    assert fake.paths().count("/v1/sessions/stop") == 2  # tried, then retried once
    assert "could not stop LiveAvatar session" in caplog.text
    assert renderer.state == "closed"
