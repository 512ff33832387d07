"""A fake LiveAvatar on 127.0.0.1 for tests and benchmarks: its HTTP API and LITE WebSocket.

Built from the wire contract (docs: providers/liveavatar). Both servers run in background
threads, so tests run under asyncio and trio alike, and record everything they receive. The
WebSocket server needs the ``websockets`` package (a test dependency, imported lazily).
``FakeRoom`` stands in for FULL mode's LiveKit room: the renderer talks
to it through the same DataTransport seam as to the real room, and it answers the way the
reference says LiveAvatar's agent does (events on ``agent-response``).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio

from avatarkit_heygen._background import Background
from avatarkit_heygen.liveavatar_full import CONTROL_TOPIC, RESPONSE_TOPIC

if TYPE_CHECKING:
    from websockets.sync.server import Server, ServerConnection

__all__ = ["API_KEY", "FakeLiveAvatar", "FakeRoom", "Knobs", "Received"]

API_KEY = "la-test-key-0123456789"


@dataclass
class Received:
    """One WebSocket message the fake received."""

    at: float  # time.perf_counter() when it arrived
    session_id: str
    connection: int
    message: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.message.get("type"))


@dataclass
class FakeSession:
    session_id: str
    token: str
    mode: str
    body: dict[str, Any]
    state: str = "created"  # created -> started -> stopped
    stops: int = 0
    connections: int = 0
    refuse_reconnect: bool = False


@dataclass
class Knobs:
    """How the fake behaves; tests change these before (or while) the renderer runs."""

    status: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (status, body)
    delay: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    playback: float = 0.0  # speak_ended comes playback * audio seconds after speak_end
    send_speak_ended: bool = True
    drop_after_speaks: int | None = None  # close the TCP connection after N agent.speak
    noise: bool = False  # send junk before "connected"
    connect_delay: float = 0.01
    max_session_duration: int = 600


class FakeLiveAvatar:
    """The fake service. Use as a context manager; ``base_url`` is what the renderer gets."""

    def __init__(self) -> None:
        self.knobs = Knobs()
        self.sessions: dict[str, FakeSession] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, Any] | None]] = []
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.ended_sent: dict[str, float] = {}  # event_id -> when agent.speak_ended was sent
        self._lock = threading.Lock()
        self._counter = 0
        self._open: dict[int, ServerConnection] = {}
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._http_handler())
        self._http.daemon_threads = True
        from websockets.sync.server import serve

        self._ws: Server = serve(
            self._ws_handler, "127.0.0.1", 0, process_request=self._ws_process_request
        )
        self._threads = [
            threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True),
            threading.Thread(target=self._ws.serve_forever, daemon=True),
        ]

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> FakeLiveAvatar:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._ws.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def ws_port(self) -> int:
        return int(self._ws.socket.getsockname()[1])

    # -- views for assertions --------------------------------------------------------------------

    def messages(self, kind: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if kind is None or r.type == kind]

    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _, _ in self.requests]

    def audio(self, event_id: str) -> bytes:
        """The PCM the renderer sent for one utterance."""
        return b"".join(
            base64.b64decode(r.message["audio"])
            for r in self.messages("agent.speak")
            if r.message.get("event_id") == event_id
        )

    def only_session(self) -> FakeSession:
        assert len(self.sessions) == 1, self.sessions
        return next(iter(self.sessions.values()))

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        """Poll (bounded) until ``predicate()`` holds: the fake runs in other threads."""
        with anyio.fail_after(seconds):
            while not predicate():  # noqa: ASYNC110 - the state changes in another thread
                await anyio.sleep(0.005)

    # -- server-side actions -------------------------------------------------------------------

    def end_session(self, session_id: str, state: str = "closed") -> None:
        """LiveAvatar ends the session (max duration, idle timeout): tell open WebSockets."""
        session = self.sessions[session_id]
        session.state = "stopped"
        session.refuse_reconnect = True
        with self._lock:
            connections = list(self._open.values())
        for ws in connections:
            try:
                ws.send(json.dumps({"type": "session.state_updated", "state": state}))
            except Exception:  # already closed
                continue
            # the closing handshake needs the client: never block the caller's event loop on it
            threading.Thread(target=ws.close, daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` on every open WebSocket (e.g. a late ``agent.speak_ended``)."""
        with self._lock:
            connections = list(self._open.values())
        for ws in connections:
            ws.send(json.dumps(message))

    def drop_connections(self) -> None:
        """Cut every open WebSocket's TCP connection without a closing handshake."""
        with self._lock:
            connections = list(self._open.values())
        for ws in connections:
            ws.socket.shutdown(socket.SHUT_RDWR)

    # -- HTTP ----------------------------------------------------------------------------------

    def _http_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append((self.path, headers, body))
                status, payload, content_type = fake._route(self.path, headers, body)
                time.sleep(fake.knobs.delay.get(self.path, 0.0))
                data = payload.encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeout tests)

        return Handler

    def _route(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        override = self.knobs.status.get(path)
        if override is not None:
            status, text = override
            kind = "application/json" if text.startswith("{") else "text/html"
            return status, text, kind
        handler = {
            "/v1/sessions/token": self._token,
            "/v1/sessions/start": self._start,
            "/v1/sessions/stop": self._stop,
            "/v1/sessions/keep-alive": self._keep_alive,
        }.get(path)
        if handler is None:
            return _error(404, "no such endpoint")
        return handler(headers, body)

    def _bearer_session(self, headers: dict[str, str]) -> FakeSession | None:
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        return next((s for s in self.sessions.values() if s.token == token), None)

    def _token(self, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        if headers.get("x-api-key") != API_KEY:
            return _error(401, "Invalid API key")
        if not isinstance(body, dict) or body.get("mode") not in ("FULL", "LITE"):
            return _error(422, "mode must be FULL or LITE")
        if not body.get("avatar_id"):
            return _error(422, "avatar_id is required")
        with self._lock:
            self._counter += 1
            sid = f"sess-{self._counter}"
        self.sessions[sid] = FakeSession(sid, f"tok-{sid}", body["mode"], body)
        return _ok({"session_id": sid, "session_token": f"tok-{sid}"})

    def _start(self, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        session = self._bearer_session(headers)
        if session is None:
            return _error(401, "invalid session token")
        if session.state != "created":
            return _error(400, f"session is {session.state}")
        session.state = "started"
        sid = session.session_id
        return _ok(
            {
                "session_id": sid,
                "livekit_url": "ws://127.0.0.1:9/livekit",
                "livekit_client_token": f"viewer-{sid}",
                "livekit_agent_token": f"agent-{sid}",
                "max_session_duration": self.knobs.max_session_duration,
                "ws_url": f"ws://127.0.0.1:{self.ws_port}/v1/ws/{sid}"
                if session.mode == "LITE"
                else None,
            }
        )

    def _stop(self, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        session = self._bearer_session(headers)
        if session is None and headers.get("x-api-key") != API_KEY:
            return _error(401, "unauthorized")
        sid = body.get("session_id") if isinstance(body, dict) else None
        session = self.sessions.get(str(sid))
        if session is None:
            return _error(404, "session not found")
        session.stops += 1
        if session.state == "stopped":
            return _error(400, "session already stopped")
        session.state = "stopped"
        session.refuse_reconnect = True
        return _ok(None)

    def _keep_alive(self, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        session = self._bearer_session(headers)
        if session is None or session.state != "started":
            return _error(404, "session not found")
        return _ok(None)

    # -- WebSocket -----------------------------------------------------------------------------

    def _ws_process_request(self, connection: ServerConnection, request: Any) -> Any:
        sid = request.path.rsplit("/", 1)[-1]
        session = self.sessions.get(sid)
        if session is None or session.state != "started" or session.refuse_reconnect:
            return connection.respond(HTTPStatus.NOT_FOUND, "session not found\n")
        return None

    def _ws_handler(self, ws: ServerConnection) -> None:
        sid = ws.request.path.rsplit("/", 1)[-1] if ws.request else "?"
        session = self.sessions[sid]
        session.connections += 1
        number = session.connections
        with self._lock:
            self._open[id(ws)] = ws
        from websockets.exceptions import ConnectionClosed

        try:
            self._serve(ws, session, number)
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._lock:
                self._open.pop(id(ws), None)

    def _serve(self, ws: ServerConnection, session: FakeSession, number: int) -> None:
        knobs = self.knobs
        connected = False
        ws.send(json.dumps({"type": "session.state_updated", "state": "connecting"}))
        if knobs.noise:
            ws.send("this is not json")
            ws.send(json.dumps({"no_type": True}))
            ws.send(json.dumps({"type": "agent.state_updated", "state": "idle"}))
            ws.send(b"\x00\x01binary")
        connect_at = time.monotonic() + knobs.connect_delay
        speaks = 0
        # event_id -> audio seconds received; pending speak_ended: (due, event_id)
        seconds: dict[str, float] = {}
        due: list[tuple[float, str]] = []
        while True:
            now = time.monotonic()
            if not connected and now >= connect_at:
                ws.send(json.dumps({"type": "session.state_updated", "state": "connected"}))
                connected = True
            for when, event_id in [d for d in due if d[0] <= now]:
                due.remove((when, event_id))
                self.ended_sent[event_id] = time.perf_counter()
                ws.send(json.dumps({"type": "agent.speak_ended", "event_id": event_id}))
            deadlines = [d[0] for d in due] + ([] if connected else [connect_at])
            wait = max(0.0, min(deadlines) - now) if deadlines else 0.5
            try:
                raw = ws.recv(timeout=wait)
            except TimeoutError:
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                self.violations.append(f"non-JSON message: {raw!r:.100}")
                continue
            with self._lock:
                self.received.append(
                    Received(time.perf_counter(), session.session_id, number, message)
                )
            kind = message.get("type")
            if not connected:
                self.violations.append(f"{kind} sent before 'connected'")
            if kind == "agent.speak":
                event_id = message.get("event_id")
                pcm = base64.b64decode(message["audio"])
                if len(json.dumps(message)) >= 1_000_000:
                    self.violations.append("agent.speak message of 1 MB or more")
                if event_id not in seconds:
                    seconds[event_id] = 0.0
                    ws.send(json.dumps({"type": "agent.speak_started", "event_id": event_id}))
                seconds[event_id] += len(pcm) / 48000
                speaks += 1
                if knobs.drop_after_speaks is not None and speaks >= knobs.drop_after_speaks:
                    knobs.drop_after_speaks = None
                    ws.socket.shutdown(socket.SHUT_RDWR)
                    return
            elif kind == "agent.speak_end":
                event_id = message.get("event_id")
                if knobs.send_speak_ended:
                    delay = knobs.playback * seconds.get(event_id, 0.0)
                    due.append((time.monotonic() + delay, event_id))
            elif kind == "agent.interrupt":
                for item in list(due):
                    due.remove(item)
                    ws.send(json.dumps({"type": "agent.speak_interrupted", "event_id": item[1]}))


def _ok(data: Any) -> tuple[int, str, str]:
    return 200, json.dumps({"code": 1000, "message": "success", "data": data}), "application/json"


def _error(status: int, message: str) -> tuple[int, str, str]:
    return status, json.dumps({"code": status, "message": message}), "application/json"


class FakeRoom:
    """FULL mode's LiveKit room as LiveAvatar's agent behaves in it (a DataTransport).

    Commands published on ``agent-control`` are recorded; ``avatar.speak_text`` is answered on
    ``agent-response`` with ``avatar.speak_started`` and, ``seconds_per_word`` per word later,
    ``avatar.speak_ended`` (unless interrupted first).
    """

    def __init__(self, *, seconds_per_word: float = 0.0, echo_event_id: bool = True) -> None:
        self.seconds_per_word = seconds_per_word
        self.echo_event_id = echo_event_id
        self.published: list[tuple[float, str, dict[str, Any]]] = []
        self.connected_with: tuple[str, str] | None = None
        self.closed = 0
        self.peers = 2
        self._on_data: Callable[[str, bytes], None] | None = None
        self._on_disconnected: Callable[[str], None] | None = None
        self._background: list[Background] = []
        self._speaking: dict[str, anyio.CancelScope] = {}

    async def connect(
        self,
        url: str,
        token: str,
        *,
        on_data: Callable[[str, bytes], None],
        on_disconnected: Callable[[str], None],
    ) -> None:
        self.connected_with = (url, token)
        self._on_data = on_data
        self._on_disconnected = on_disconnected

    async def wait_for_peers(self, count: int, seconds: float) -> int:
        return self.peers

    def emit(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """LiveAvatar's agent publishes a data message."""
        assert self._on_data is not None
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self._on_data(topic, data)

    def disconnect(self, reason: str = "room closed") -> None:
        assert self._on_disconnected is not None
        self._on_disconnected(reason)

    def commands(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [m for _, _, m in self.published if event_type in (None, m.get("event_type"))]

    async def publish_data(self, topic: str, payload: bytes) -> None:
        message = json.loads(payload)
        self.published.append((time.perf_counter(), topic, message))
        if topic != CONTROL_TOPIC:
            return
        kind = message.get("event_type")
        if kind == "avatar.speak_text":
            event_id = message["event_id"]
            self.emit(RESPONSE_TOPIC, self._event("avatar.speak_started", event_id))
            words = len(message["text"].split())
            task = Background(lambda: self._finish(event_id, words), name="fake-room")
            self._background.append(task)
            task.start()
        elif kind == "avatar.interrupt":
            for scope in self._speaking.values():
                scope.cancel()

    def _event(self, kind: str, event_id: str) -> dict[str, Any]:
        event: dict[str, Any] = {"event_type": kind}
        if self.echo_event_id:
            event["event_id"] = event_id
        return event

    async def _finish(self, event_id: str, words: int) -> None:
        with anyio.CancelScope() as scope:
            self._speaking[event_id] = scope
            await anyio.sleep(self.seconds_per_word * words)
            self.emit(RESPONSE_TOPIC, self._event("avatar.speak_ended", event_id))
        self._speaking.pop(event_id, None)

    async def close(self) -> None:
        self.closed += 1
        for task in self._background:
            await task.stop()
