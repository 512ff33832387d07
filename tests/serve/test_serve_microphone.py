"""The page's microphone over the serve WebSocket: mic_start, binary PCM16 frames into
``session.listen``, mic_stop; transcripts and barge-in reach the page. Real uvicorn on
127.0.0.1 and the ``websockets`` client; the browser side is in test_serve_mic_browser.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from avatarkit import AvatarSession
from avatarkit.serve import protocol
from avatarkit.serve.microphone import MAX_FRAME_BYTES
from avatarkit.testing import FakeLLM, FakeTextRenderer

ServerThread = Any


def ws_connect(server: ServerThread) -> ClientConnection:
    return connect(server.ws_url, proxy=None, open_timeout=10, max_size=None, max_queue=None)


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], limit: int = 2000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = recv(ws)
        seen.append(message)
        if match(message):
            return message, seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


def ready(ws: ClientConnection) -> dict[str, Any]:
    """Start the session (as the page does on the person's click) and wait until it is up."""
    recv_until(ws, lambda m: m["type"] == "hello")
    ws.send(json.dumps({"type": "start"}))
    message, _ = recv_until(ws, lambda m: m["type"] == "ready")
    return message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "mic_start", "sample_rate": 16000}, protocol.MicStart(16000)),
        ({"type": "mic_start", "sample_rate": 48000}, protocol.MicStart(48000)),
        ({"type": "mic_stop"}, protocol.MicStop()),
    ],
)
def test_mic_messages_parse(raw: dict[str, Any], expected: object) -> None:
    assert protocol.parse_client_message(json.dumps(raw)) == expected


@pytest.mark.parametrize("rate", [None, "16000", 16000.0, True, 7999, 96001, -1])
def test_mic_start_needs_a_sane_sample_rate(rate: object) -> None:
    with pytest.raises(protocol.ProtocolError, match='"sample_rate" between 8000 and 96000') as e:
        protocol.parse_client_message(json.dumps({"type": "mic_start", "sample_rate": rate}))
    assert e.value.code == "bad_field"


def test_unknown_types_name_the_mic_messages() -> None:
    with pytest.raises(protocol.ProtocolError, match='"mic_start", "mic_stop"'):
        protocol.parse_client_message('{"type": "mic"}')


def test_a_session_without_stt_says_it_cannot_listen(serve: Callable[..., ServerThread]) -> None:
    server = serve(lambda: AvatarSession(llm=FakeLLM(["Hi."]), renderer=FakeTextRenderer()))
    with ws_connect(server) as ws:
        assert ready(ws)["listen"] is False
        ws.send(json.dumps({"type": "mic_start", "sample_rate": 16000}))
        error = recv(ws)
        assert (error["type"], error["stage"]) == ("error", "config")
        assert "add an stt: section" in error["message"]
        ws.send(b"\x00\x00" * 320)  # no stream open: binary is refused, the page stays up
        error = recv(ws)
        assert (error["stage"], "not accepted" in error["message"]) == ("protocol", True)
        ws.send(json.dumps({"type": "send", "text": "still there?"}))
        recv_until(ws, lambda m: m["type"] == "metrics")


def test_frame_limit_is_generous_for_20ms_frames() -> None:
    assert MAX_FRAME_BYTES >= 48000 * 2 * 0.02 * 10


# -- through session.listen, with Deepgram's live protocol against the loopback fake -----------

RATE = 16000
FRAME = 2 * RATE // 50  # 20 ms


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


class DeepgramFactory:
    """Sessions that listen with the deepgram STT (FakeDeepgram on 127.0.0.1)."""

    def __init__(self, fake: Any, replies: list[str]) -> None:
        self.fake = fake
        self.replies = replies
        self.sessions: list[AvatarSession] = []

    def __call__(self) -> AvatarSession:
        from avatarkit_deepgram.stt import DeepgramSTT
        from avatarkit_deepgram.testing import API_KEY

        session = AvatarSession(
            llm=FakeLLM(self.replies),
            renderer=FakeTextRenderer(seconds_per_char=0.03),
            stt=DeepgramSTT(api_key=API_KEY, base_url=self.fake.base_url),
        )
        self.sessions.append(session)
        return session


@pytest.fixture
def deepgram() -> Any:
    from avatarkit_deepgram.testing import FakeDeepgram

    with FakeDeepgram() as fake:
        yield fake


def test_speech_becomes_a_turn_and_speaking_over_the_reply_interrupts_it(
    serve: Callable[..., ServerThread], deepgram: Any
) -> None:
    from avatarkit.tonespeech import tone_speech

    long_reply = "Let me tell you a long story about the sea. " * 6
    factory = DeepgramFactory(deepgram, [long_reply, "Fine, I will stop."])
    server = serve(factory)
    with ws_connect(server) as ws:
        assert ready(ws)["listen"] is True
        ws.send(json.dumps({"type": "mic_start", "sample_rate": RATE}))
        assert recv_until(ws, lambda m: m["type"] == "mic")[0]["state"] == "on"
        for frame in frames(tone_speech(["hello there how are you"], RATE, pause=1.5)):
            ws.send(frame)
        ws.send(b"\x01")  # not whole samples: refused, the stream goes on
        final, seen = recv_until(ws, lambda m: m["type"] == "user_transcript" and m["final"])
        assert final["text"] == "hello there how are you"
        interims = [m["text"] for m in seen if m["type"] == "user_transcript" and not m["final"]]
        assert interims
        assert all(final["text"].startswith(t) for t in interims)
        assert any(m["type"] == "user_speech_start" for m in seen)
        _, more = recv_until(ws, lambda m: m["type"] == "sentence_end")  # the avatar spoke...
        errors = [m for m in seen + more if m["type"] == "error"]
        assert [(e["stage"], e["code"]) for e in errors] == [("protocol", "bad_frame")]
        assert "whole 16-bit samples" in errors[0]["message"]
        for frame in frames(tone_speech(["stop please stop"], RATE, pause=1.5)):
            ws.send(frame)  # ...and the user talks over it
        _, seen = recv_until(ws, lambda m: m["type"] == "user_transcript" and m["final"])
        assert seen[-1]["text"] == "stop please stop"
        cut = [m for m in seen if m["type"] == "metrics"]
        assert cut
        assert cut[0]["interrupted"] is True
        metrics, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        assert metrics["interrupted"] is False
        ws.send(json.dumps({"type": "send", "text": "typing still works"}))
        recv_until(ws, lambda m: m["type"] == "metrics")
        ws.send(json.dumps({"type": "mic_stop"}))
        off, _ = recv_until(ws, lambda m: m["type"] == "mic")
        assert (off["state"], off["dropped"]) == ("off", 0)
        ws.send(json.dumps({"type": "mic_start", "sample_rate": RATE}))  # again, after off
        assert recv_until(ws, lambda m: m["type"] == "mic")[0]["state"] == "on"
    session = factory.sessions[0]
    said = [m.content for m in session.history if m.role == "user"]
    assert said == ["hello there how are you", "stop please stop", "typing still works"]
    roles = [m.role for m in session.history]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    cut_reply = session.history[1].content
    assert long_reply.startswith(cut_reply.strip())
    assert 0 < len(cut_reply) < len(long_reply) - 40  # history holds only what was spoken
    assert session.history[3].content == "Fine, I will stop."
    assert deepgram.connections[0].ended is not None


def test_voice_turns_reach_a_heygen_avatar(
    serve: Callable[..., ServerThread], serve_asgi: Callable[[Any], ServerThread], deepgram: Any
) -> None:
    """The microphone does not depend on the renderer: with HeyGen (text route, its fake API
    on 127.0.0.1) a spoken turn becomes HeyGen's task, and the session still stops at the end."""
    from avatarkit import load_session
    from avatarkit.tonespeech import tone_speech
    from avatarkit_deepgram.testing import API_KEY

    from .test_serve_page import FakeHeyGenAndLivekit

    fake = FakeHeyGenAndLivekit()
    served = serve_asgi(fake.app)
    fake.url = f"ws://127.0.0.1:{served.port}"
    config = {
        "llm": {"provider": "scripted", "replies": ["Hello from HeyGen."]},
        "renderer": {
            "provider": "heygen",
            "api_key": fake.api_key,
            "base_url": served.url,
            "avatar_id": "Wayne_20240711",
        },
        "stt": {"provider": "deepgram", "api_key": API_KEY, "base_url": deepgram.base_url},
    }

    def factory() -> AvatarSession:
        return load_session(config)

    server = serve(factory)
    with ws_connect(server) as ws:
        message = ready(ws)
        assert (message["display"], message["listen"]) == ("livekit", True)
        ws.send(json.dumps({"type": "mic_start", "sample_rate": RATE}))
        for frame in frames(tone_speech(["hello avatar"], RATE, pause=1.5)):
            ws.send(frame)
        final, _ = recv_until(ws, lambda m: m["type"] == "user_transcript" and m["final"])
        assert final["text"] == "hello avatar"
        recv_until(ws, lambda m: m["type"] == "metrics")
    assert [b["text"] for b in fake.ops("task")] == ["Hello from HeyGen."]
    session_id = fake.ops("start")[0]["session_id"]
    deadline = time.monotonic() + 10
    while fake.sessions[session_id] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.sessions[session_id] == "stopped"
