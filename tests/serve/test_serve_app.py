"""The serve app over a real WebSocket (uvicorn on 127.0.0.1, the ``websockets`` client):
protocol, limits, bad input, lifecycle. The page itself is tested in test_serve_page.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from avatarkit import AvatarSession, ConfigError, ProviderHTTPError
from avatarkit.errors import AvatarKitError
from avatarkit.serve import protocol, require_serve_extra
from avatarkit.serve.connection import Limits
from avatarkit.testing import FakeLLM, FakeTextRenderer

ServerThread = Any  # tests/serve/conftest.py: a uvicorn server in a thread


class CountingTextRenderer(FakeTextRenderer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1
        await super().close()


class Factory:
    """Builds text-route sessions with fakes and keeps them for inspection."""

    def __init__(self, replies: tuple[str, ...] = ("Hello there. How are you?",), **kw: Any):
        self.replies = replies
        self.renderer_kwargs = kw
        self.sessions: list[AvatarSession] = []

    def __call__(self) -> AvatarSession:
        session = AvatarSession(
            llm=FakeLLM(self.replies), renderer=CountingTextRenderer(**self.renderer_kwargs)
        )
        self.sessions.append(session)
        return session

    @property
    def renderers(self) -> list[CountingTextRenderer]:
        return [s.renderer for s in self.sessions]


def wait_until(condition: Callable[[], Any], *, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ws_connect(server: ServerThread, **kwargs: Any) -> ClientConnection:
    return connect(
        server.ws_url, proxy=None, open_timeout=10, max_size=None, max_queue=None, **kwargs
    )


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], limit: int = 500
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Messages up to and including the first that ``match``es (bounded)."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = recv(ws)
        seen.append(message)
        if match(message):
            return message, seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


def handshake(ws: ClientConnection) -> tuple[dict[str, Any], dict[str, Any]]:
    """hello, then ``start`` (the page sends it on the person's click), then ready."""
    hello = recv(ws)
    assert hello["type"] == "hello"
    ws.send(json.dumps({"type": "start"}))
    ready = recv(ws)
    assert ready["type"] == "ready", ready
    return hello, ready


def test_hello_ready_and_a_streamed_turn(serve: Callable[..., ServerThread]) -> None:
    factory = Factory()
    server = serve(factory, title="demo.yaml")
    with ws_connect(server) as ws:
        hello, ready = handshake(ws)
        assert hello == {
            "type": "hello",
            "protocol": 2,
            "version": hello["version"],
            "title": "demo.yaml",
            "worker": hello["worker"],
            "auth": False,
            "limits": {"max_message_bytes": 65536, "max_text_chars": 4000, "max_pending": 3},
        }
        assert len(hello["worker"]) == 8
        assert ready == {
            "type": "ready",
            "route": "text",
            "display": "none",
            "renderer": "CountingTextRenderer",
            "state": "idle",
            "listen": False,  # no stt: no microphone
        }
        ws.send(json.dumps({"type": "send", "text": "  hi  "}))
        _, seen = recv_until(ws, lambda m: m["type"] == "metrics")
    types = [m["type"] for m in seen]
    assert types[0] == "state"
    assert seen[0]["state"] == "thinking"
    assert "".join(m["text"] for m in seen if m["type"] == "delta") == "Hello there. How are you?"
    assert [m["text"] for m in seen if m["type"] == "sentence_start"] == [
        "Hello there.",
        "How are you?",
    ]
    metrics = seen[-1]
    assert metrics["turn"] == 1
    assert metrics["sentences"] == 2
    assert not metrics["interrupted"]
    assert metrics["time_to_first_speech"] is not None
    assert factory.sessions[0].history[0].content == "hi"
    assert factory.renderers[0].spoken == ["Hello there.", "How are you?"]


def test_closing_the_socket_closes_the_session_once(serve: Callable[..., ServerThread]) -> None:
    factory = Factory(seconds_per_char=0.05)  # a slow avatar: close mid-sentence
    server = serve(factory)
    with ws_connect(server) as ws:
        handshake(ws)
        ws.send(json.dumps({"type": "send", "text": "talk"}))
        recv_until(ws, lambda m: m["type"] == "sentence_start")
    renderer = factory.renderers[0]
    wait_until(lambda: renderer.closes == 1, what="renderer close")
    wait_until(lambda: httpx.get(f"{server.url}/healthz").json()["sessions"] == 0, what="slot")
    assert factory.sessions[0].state == "closed"
    assert renderer.closes == 1


DEEP = "[" * 100_000 + "]" * 100_000  # over the 64 KiB limit: refused by size
DEEP_SMALL = '{"type": "send", "text": ' + "[" * 30_000 + "]" * 30_000 + "}"  # 60 KB


@pytest.mark.parametrize(
    ("raw", "code", "expected"),
    [
        ("{not json", "bad_json", "not valid JSON"),
        ("[1, 2]", "not_object", "must be a JSON object"),
        ('{"type": "dance"}', "unknown_type", "unknown message type 'dance'"),
        ('{"type": ["send"]}', "unknown_type", "unknown message type"),
        ('{"text": "hi"}', "no_type", 'no "type"'),
        ('{"type": "send"}', "bad_field", 'needs a "text" string'),
        ('{"type": "send", "text": "   "}', "empty_text", "non-empty"),
        ('{"type": "send", "text": "\u200b\u200d\ufeff \u2060\u3164"}', "empty_text", ""),
        ('{"type": "send", "text": "hi \\ud800"}', "bad_text", "lone surrogate"),
        ('{"type": "send", "text": "' + "x" * 4001 + '"}', "text_too_long", "the limit is 4000"),
        ('{"type": "played", "utterance": "one"}', "bad_field", '"utterance" number'),
        (json.dumps({"type": "send", "text": "y" * (1 << 20)}), "too_large", "limit of 65536"),
        (DEEP, "too_large", "over the limit"),
        (DEEP_SMALL, "too_deep", "nested too deeply"),
        ("[" * 20_000, "too_deep", "nested too deeply"),
        (b"\x00\x01binary", "binary", "binary messages are not accepted"),
    ],
    ids=[
        "malformed",
        "array",
        "unknown-type",
        "unhashable-type",
        "no-type",
        "no-text",
        "blank",
        "zero-width",
        "lone-surrogate",
        "long",
        "bad-played",
        "1MB",
        "deep-1MB",
        "deep-60KB",
        "deep-unclosed",
        "binary",
    ],
)
def test_bad_messages_get_an_error_and_the_session_stays_up(
    serve: Callable[..., ServerThread], raw: str | bytes, code: str, expected: str
) -> None:
    factory = Factory()
    server = serve(factory)
    with ws_connect(server) as ws:
        handshake(ws)
        ws.send(raw)
        error = recv(ws)
        assert error["type"] == "error"
        assert error["stage"] == "protocol"
        assert error["code"] == code
        assert expected in error["message"]
        ws.send(json.dumps({"type": "send", "text": "still there?"}))
        metrics, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        assert metrics["sentences"] == 2
    assert len(factory.sessions) == 1
    assert [m.content for m in factory.sessions[0].history if m.role == "user"] == ["still there?"]


def test_connecting_alone_starts_nothing(serve: Callable[..., ServerThread]) -> None:
    """A page that only loads (in a hidden frame, say) builds no session and takes no slot;
    messages other than ``start`` are refused until the person starts the avatar."""
    factory = Factory()
    server = serve(factory, max_sessions=1)
    with ws_connect(server) as idle, ws_connect(server) as other:
        for ws in (idle, other):
            assert recv(ws)["type"] == "hello"
        idle.send(json.dumps({"type": "send", "text": "hello"}))
        refused = recv(idle)
        assert (refused["stage"], refused["code"]) == ("protocol", "not_started")
        idle.send(json.dumps({"type": "interrupt"}))
        assert recv(idle)["code"] == "not_started"
        assert factory.sessions == []
        assert httpx.get(f"{server.url}/healthz").json()["sessions"] == 0
        handshake_after_hello(other)  # the one slot is still free for a page that starts
        other.send(json.dumps({"type": "start"}))
        again = recv(other)
        assert (again["stage"], again["code"]) == ("protocol", "started")
    assert len(factory.sessions) == 1


def handshake_after_hello(ws: ClientConnection) -> dict[str, Any]:
    ws.send(json.dumps({"type": "start"}))
    ready = recv(ws)
    assert ready["type"] == "ready", ready
    return ready


def test_fifty_rapid_messages_leave_the_server_serving_others(
    serve: Callable[..., ServerThread],
) -> None:
    factory = Factory(seconds_per_char=0.01)
    server = serve(factory, max_sessions=2)
    with ws_connect(server) as flood:
        handshake(flood)
        for i in range(50):
            flood.send(json.dumps({"type": "send", "text": f"message {i}"}))
        busy = 0
        for _ in range(2000):  # bounded: until the last turn's metrics
            message = recv(flood, timeout=20)
            busy += message["type"] == "error" and message["stage"] == "busy"
            if message["type"] == "state" and message["state"] == "idle":
                if factory.sessions[0].state == "idle" and busy:
                    break
        assert busy > 0  # the queue is bounded; extra messages are refused, not piled up
        # Meanwhile another page gets its own session and a full answer.
        with ws_connect(server) as other:
            handshake(other)
            other.send(json.dumps({"type": "send", "text": "hello?"}))
            metrics, _ = recv_until(other, lambda m: m["type"] == "metrics")
            assert not metrics["interrupted"]
        flood.send(json.dumps({"type": "send", "text": "one more"}))
        recv_until(flood, lambda m: m["type"] == "metrics" and not m["interrupted"])
    user_messages = [m.content for m in factory.sessions[0].history if m.role == "user"]
    assert user_messages[0] == "message 0"
    assert user_messages[-1] == "one more"
    assert len(user_messages) < 50


def test_a_new_message_interrupts_the_current_reply(serve: Callable[..., ServerThread]) -> None:
    factory = Factory(("A long first sentence to say. And another one after it.",))
    factory.renderer_kwargs = {"seconds_per_char": 0.05}
    server = serve(factory)
    with ws_connect(server) as ws:
        handshake(ws)
        ws.send(json.dumps({"type": "send", "text": "first"}))
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        ws.send(json.dumps({"type": "send", "text": "second"}))
        first, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        second, _ = recv_until(ws, lambda m: m["type"] == "metrics")
    assert first["interrupted"]
    assert first["turn"] == 1
    assert second["turn"] == 2


def test_interrupt_message_stops_the_avatar(serve: Callable[..., ServerThread]) -> None:
    factory = Factory(("This reply takes a long while to say out loud. Really.",))
    factory.renderer_kwargs = {"seconds_per_char": 0.1}
    server = serve(factory)
    with ws_connect(server) as ws:
        handshake(ws)
        ws.send(json.dumps({"type": "send", "text": "talk"}))
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        ws.send(json.dumps({"type": "interrupt"}))
        ended, _ = recv_until(ws, lambda m: m["type"] == "sentence_end")
        metrics, _ = recv_until(ws, lambda m: m["type"] == "metrics")
    assert ended["interrupted"]
    assert metrics["interrupted"]
    assert factory.renderers[0].interrupts >= 1
    assert factory.renderers[0].completed == []


def test_over_the_limit_gets_a_clear_message(serve: Callable[..., ServerThread]) -> None:
    factory = Factory()
    server = serve(factory, max_sessions=1)
    with ws_connect(server) as first:
        handshake(first)
        with ws_connect(server) as second:
            assert recv(second)["type"] == "hello"  # connecting takes no slot ...
            second.send(json.dumps({"type": "start"}))  # ... starting does
            error = recv(second)
            assert error["type"] == "error"
            assert error["stage"] == "limit"
            assert error["code"] == "server_full"
            assert "already runs 1 avatar session" in error["message"]
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1013
        first.send(json.dumps({"type": "send", "text": "still fine"}))
        recv_until(first, lambda m: m["type"] == "metrics")
    assert len(factory.sessions) == 1  # the refused page never built a session
    wait_until(lambda: httpx.get(f"{server.url}/healthz").json()["sessions"] == 0, what="slot")
    with ws_connect(server) as third:  # the slot is free again
        handshake(third)


def test_a_broken_session_file_is_reported_without_server_paths(
    serve: Callable[..., ServerThread], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_path = str(tmp_path / "private" / "avatar.yaml")

    def factory() -> AvatarSession:
        raise ConfigError("unknown field 'modle'", path=secret_path, line=3, field="llm")

    server = serve(factory)
    with ws_connect(server) as ws:
        assert recv(ws)["type"] == "hello"
        ws.send(json.dumps({"type": "start"}))
        error = recv(ws)
        assert error == {
            "type": "error",
            "turn": None,
            "stage": "config",
            "code": "config_invalid",
            "message": "the server could not create the avatar session; its log says why",
        }
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1011
    assert f"{secret_path}:3: llm: unknown field 'modle'" in caplog.text  # the operator's log


def test_a_renderer_that_fails_to_start_is_reported_and_closed(
    serve: Callable[..., ServerThread],
) -> None:
    class FailingRenderer(CountingTextRenderer):
        async def start(self) -> None:
            raise ProviderHTTPError("invalid API key", provider="heygen", status_code=401)

    renderers: list[FailingRenderer] = []

    def factory() -> AvatarSession:
        renderers.append(FailingRenderer())
        return AvatarSession(llm=FakeLLM(), renderer=renderers[-1])

    server = serve(factory)
    with ws_connect(server) as ws:
        assert recv(ws)["type"] == "hello"
        ws.send(json.dumps({"type": "start"}))
        error = recv(ws)
        assert error == {
            "type": "error",
            "turn": None,
            "stage": "start",
            "code": "start_failed",
            "message": "the avatar session could not start; the server log says why",
            "provider": "heygen",
            "retryable": False,
        }
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1011
    assert renderers[0].closes == 1  # a half-started paid session is stopped


def test_pages_from_other_origins_are_refused(serve: Callable[..., ServerThread]) -> None:
    factory = Factory()
    server = serve(factory)
    with ws_connect(server, origin="http://elsewhere.invalid") as ws:  # type: ignore[arg-type]
        error = recv(ws)
        assert error["stage"] == "origin"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert factory.sessions == []
    with ws_connect(server, origin=server.url) as ws:  # type: ignore[arg-type]
        handshake(ws)


def test_the_page_and_its_modules_are_served(serve: Callable[..., ServerThread]) -> None:
    server = serve(Factory())
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        index = client.get("/")
        assert index.status_code == 200
        assert '<script type="module"' in index.text
        for name in ("app.js", "player.js", "face.js", "room.js"):
            module = client.get(f"/static/{name}")
            assert module.status_code == 200
            assert "javascript" in module.headers["content-type"]
        assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_livekit_client_is_served_from_the_npm_cache_or_explained(
    serve: Callable[..., ServerThread], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("AVATARKIT_LIVEKIT_CLIENT", raising=False)
    monkeypatch.chdir(tmp_path)
    server = serve(Factory())
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        missing = client.get("/vendor/livekit-client.mjs")
        assert missing.status_code == 404
        assert "npm install --prefix ~/.cache/avatarkit/npm livekit-client@2" in missing.text
        dist = tmp_path / "npm/node_modules/livekit-client/dist"
        dist.mkdir(parents=True)
        (dist / "livekit-client.esm.mjs").write_text("export const Room = 1;\n")
        monkeypatch.setenv("AVATARKIT_LIVEKIT_CLIENT", str(tmp_path / "npm"))
        found = client.get("/vendor/livekit-client.mjs")
        assert found.status_code == 200
        assert found.text == "export const Room = 1;\n"
        assert found.headers["content-type"].startswith("text/javascript")


def test_missing_serve_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(
        AvatarKitError, match=r"needs uvicorn.*pip install 'avatarkit-core\[serve\]'"
    ):
        require_serve_extra()


def test_protocol_limits_are_configurable(serve: Callable[..., ServerThread]) -> None:
    server = serve(Factory(), limits=Limits(max_message_bytes=100, max_text_chars=5))
    with ws_connect(server) as ws:
        hello, _ = handshake(ws)
        assert hello["limits"]["max_message_bytes"] == 100
        ws.send(json.dumps({"type": "send", "text": "too long"}))
        assert "the limit is 5" in recv(ws)["message"]
        ws.send(json.dumps({"type": "send", "text": "a" * 200}))
        assert "limit of 100 bytes" in recv(ws)["message"]


def test_parse_client_message_accepts_the_documented_shapes() -> None:
    assert protocol.parse_client_message('{"type": "send", "text": " hi "}') == protocol.SendText(
        "hi"
    )
    assert protocol.parse_client_message('{"type": "interrupt"}') == protocol.Interrupt()
    assert protocol.parse_client_message(
        '{"type": "played", "utterance": 3, "extra": true}'
    ) == protocol.Played(3)
    with pytest.raises(protocol.ProtocolError, match="utterance"):
        protocol.parse_client_message('{"type": "played", "utterance": true}')
