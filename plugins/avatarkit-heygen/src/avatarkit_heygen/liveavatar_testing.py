"""A fake LiveAvatar on 127.0.0.1 for tests and benchmarks: its HTTP API and LITE WebSocket.

Built from the wire contract (docs: providers/liveavatar) and held to the published clients:
the suite runs LiveAvatar's web SDK and LiveKit's ``livekit-plugins-liveavatar`` against it, so
it accepts every request shape they send (a stop with only the bearer token, a start without a
body, per-chunk ``event_id``s, ``livekit_config``) and its session tokens are JWTs whose payload
carries ``start_session_data`` as the web SDK reads it. Both servers run in background threads,
so tests run under asyncio and trio alike, and record everything they receive. The WebSocket
server needs the ``websockets`` package (a test dependency, imported lazily).
``FakeRoom`` stands in for FULL mode's LiveKit room: the renderer talks to it through the same
DataTransport seam as to the real room; LiveAvatar's two participants join it (on a schedule a
test may set) and its agent answers on ``agent-response`` with events that carry their own
``event_id`` and the command's ``source_event_id``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio

from avatarkit_heygen._background import Background
from avatarkit_heygen.liveavatar_full import (
    AGENT_IDENTITY,
    AVATAR_IDENTITY,
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
)

if TYPE_CHECKING:
    from websockets.sync.server import Server, ServerConnection

__all__ = [
    "AGENT_PREFIX",
    "API_KEY",
    "AVATAR_IDENTITY",
    "FakeLiveAvatar",
    "FakeRoom",
    "Knobs",
    "Received",
    "session_token_payload",
]

API_KEY = "la-test-key-0123456789"
#: LiveAvatar's agent joins a FULL session's room as AGENT_PREFIX + session id.
AGENT_PREFIX = AGENT_IDENTITY.format(session_id="")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(payload: dict[str, Any]) -> str:
    """A JWT-shaped token (unsigned: nothing here verifies it, as the web SDK does not)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
    return f"{header}.{body}.{_b64url(uuid.uuid4().bytes)}"


def session_token_payload(token: str) -> dict[str, Any]:
    """The payload of a session token, decoded the way LiveAvatar's web SDK decodes it."""
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


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
    stop_bodies: list[Any] = field(default_factory=list)


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
    answer_pings: bool = True  # False: WebSocket pings are never answered (a stalled server)
    agent_states: bool = True  # send agent.state_updated (talking / listening) as well
    error_after_speaks: int | None = None  # send an ``error`` event after N agent.speak
    warning_on_connect: bool = False  # send a ``warning`` event once connected
    omit_start_fields: set[str] = field(default_factory=set)  # leave these out of start's data


class FakeLiveAvatar:
    """The fake service. Use as a context manager; ``base_url`` is what the renderer gets."""

    def __init__(self) -> None:
        self.knobs = Knobs()
        self.sessions: dict[str, FakeSession] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, Any] | None]] = []
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.ended_sent: dict[str, float] = {}  # event_id -> when agent.speak_ended was sent
        self.pings = 0  # WebSocket pings received
        self.sent: list[dict[str, Any]] = []  # every event the WebSocket server sent
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
        if "voice_agent" in body and "avatar_persona" in body:  # LiveAvatar's API reference
            return _error(422, "voice_agent and avatar_persona are mutually exclusive")
        with self._lock:
            self._counter += 1
            sid = f"sess-{self._counter}"
        token = _jwt(
            {
                "session_id": sid,
                "start_session_data": body,
                "exp": int(time.time()) + 3600,
            }
        )
        self.sessions[sid] = FakeSession(sid, token, body["mode"], body)
        return _ok({"session_id": sid, "session_token": token})

    def _start(self, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        # the web SDK posts no body, LiveKit's plugin {"session_id"}: the token names the session
        session = self._bearer_session(headers)
        if session is None:
            return _error(401, "invalid session token")
        if session.state != "created":
            return _error(400, f"session is {session.state}")
        session.state = "started"
        sid = session.session_id
        data = {
            "session_id": sid,
            "livekit_url": "ws://127.0.0.1:9/livekit",
            "livekit_client_token": f"viewer-{sid}",
            "livekit_agent_token": f"agent-{sid}",
            "max_session_duration": self.knobs.max_session_duration,
            "ws_url": f"ws://127.0.0.1:{self.ws_port}/v1/ws/{sid}"
            if session.mode == "LITE"
            else None,
        }
        return _ok({k: v for k, v in data.items() if k not in self.knobs.omit_start_fields})

    def _stop(self, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        # the web SDK stops with only the bearer token (no body); LiveKit's plugin and we send
        # {"session_id"} (plus "reason"); with the API key the body must name the session
        session = self._bearer_session(headers)
        if session is None:
            if headers.get("x-api-key") != API_KEY:
                return _error(401, "unauthorized")
            sid = body.get("session_id") if isinstance(body, dict) else None
            session = self.sessions.get(str(sid))
            if session is None:
                return _error(404, "session not found")
        elif isinstance(body, dict) and body.get("session_id") not in (None, session.session_id):
            return _error(400, "session_id does not match the session token")
        session.stops += 1
        session.stop_bodies.append(body)
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
        from websockets.frames import Frame, Opcode

        send_frame = ws.protocol.send_frame

        def answer_ping(frame: Frame) -> None:
            if frame.opcode is Opcode.PONG:
                self.pings += 1
                if not self.knobs.answer_pings:
                    return
            send_frame(frame)

        ws.protocol.send_frame = answer_ping  # type: ignore[method-assign]

        try:
            self._serve(ws, session, number)
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._lock:
                self._open.pop(id(ws), None)

    def _serve(self, ws: ServerConnection, session: FakeSession, number: int) -> None:
        """One connection. An utterance is the audio appended since the last ``agent.speak_end``
        (or interrupt): ``agent.speak_started`` names its first ``agent.speak``'s event_id (as
        LiveAvatar's LITE events page says) and a ``task`` id, ``agent.speak_ended`` the
        ``agent.speak_end``'s event_id and the same task (one id for both when, as ours and the
        web SDK do, a client reuses one id; LiveKit's plugin sends a new id per message)."""
        knobs = self.knobs

        def emit(event: dict[str, Any]) -> None:
            with self._lock:
                self.sent.append(event)
            ws.send(json.dumps(event))

        def agent_state(previous: str, new: str) -> None:
            if knobs.agent_states:
                emit({"type": "agent.state_updated", "previous_state": previous, "new_state": new})

        connected = False
        emit({"type": "session.state_updated", "state": "connecting"})
        if knobs.noise:
            ws.send("this is not json")
            ws.send(json.dumps({"no_type": True}))
            ws.send(json.dumps({"type": "agent.something_new", "state": "idle"}))
            ws.send(b"\x00\x01binary")
        connect_at = time.monotonic() + knobs.connect_delay
        speaks = 0
        # the utterance being appended: audio seconds, its first chunk's event_id, its task id
        current: list[Any] = [0.0, None, None]
        due: list[tuple[float, str | None, str]] = []  # speak_ended due: (when, event_id, task)
        while True:
            now = time.monotonic()
            if not connected and now >= connect_at:
                emit({"type": "session.state_updated", "state": "connected"})
                connected = True
                if knobs.warning_on_connect:
                    emit({"type": "warning", "warning": {"message": "low bandwidth"}})
            for when, event_id, task in [d for d in due if d[0] <= now]:
                due.remove((when, event_id, task))
                if event_id is not None:
                    self.ended_sent[event_id] = time.perf_counter()
                emit({"type": "agent.speak_ended", "event_id": event_id, "task": {"id": task}})
                if not due:
                    agent_state("talking", "listening")
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
            event_id = message.get("event_id")
            if kind == "agent.speak":
                pcm = base64.b64decode(message["audio"])
                if len(json.dumps(message)) >= 1_000_000:
                    self.violations.append("agent.speak message of 1 MB or more")
                if current[1] is None:
                    current[1] = event_id or f"auto-{uuid.uuid4().hex}"
                    current[2] = f"task-{uuid.uuid4().hex[:12]}"
                    if not due:
                        agent_state("listening", "talking")
                    emit(
                        {
                            "type": "agent.speak_started",
                            "event_id": current[1],
                            "task": {"id": current[2]},
                        }
                    )
                current[0] += len(pcm) / 48000
                speaks += 1
                if knobs.error_after_speaks is not None and speaks >= knobs.error_after_speaks:
                    knobs.error_after_speaks = None
                    emit(
                        {
                            "type": "error",
                            "event_id": event_id,
                            "error": {"code": "invalid_audio", "message": "bad audio chunk"},
                        }
                    )
                if knobs.drop_after_speaks is not None and speaks >= knobs.drop_after_speaks:
                    knobs.drop_after_speaks = None
                    ws.socket.shutdown(socket.SHUT_RDWR)
                    return
            elif kind == "agent.speak_end":
                ended_id = event_id or current[1]
                if knobs.send_speak_ended and current[1] is not None:
                    due.append(
                        (time.monotonic() + knobs.playback * current[0], ended_id, current[2])
                    )
                current[:] = [0.0, None, None]
            elif kind == "agent.interrupt":
                interrupted = [item[1] for item in due] + (
                    [current[1]] if current[1] is not None else []
                )
                due.clear()
                current[:] = [0.0, None, None]
                for item in interrupted:
                    emit({"type": "agent.speak_interrupted", "event_id": item})
                emit({"type": "agent.audio_buffer_cleared", "event_id": event_id})
                if interrupted:
                    agent_state("talking", "listening")


def _ok(data: Any) -> tuple[int, str, str]:
    return 200, json.dumps({"code": 1000, "message": "success", "data": data}), "application/json"


def _error(status: int, message: str) -> tuple[int, str, str]:
    return status, json.dumps({"code": status, "message": message}), "application/json"


class FakeRoom:
    """FULL mode's LiveKit room as LiveAvatar's participants behave in it (a DataTransport).

    After :meth:`connect`, the avatar (``heygen``) and LiveAvatar's agent
    (``liveavatar-agent-<session_id>``) join, each ``join_delays[identity]`` seconds later
    (default at once; ``None`` never). Commands published on ``agent-control`` are recorded with
    who was in the room; a command sent before the agent joined is *lost*, as in the real room.
    ``avatar.speak_text`` is answered on ``agent-response`` with ``avatar.speak_started`` and,
    ``seconds_per_word`` per word later, ``avatar.speak_ended``; each event has its own
    ``event_id`` and names the command in ``source_event_id`` (``echo_event_id=False`` leaves
    both out, as an older server might).
    """

    def __init__(
        self,
        *,
        seconds_per_word: float = 0.0,
        echo_event_id: bool = True,
        join_delays: dict[str, float | None] | None = None,
    ) -> None:
        self.seconds_per_word = seconds_per_word
        self.echo_event_id = echo_event_id
        self.join_delays: dict[str, float | None] = dict(join_delays or {})
        self.published: list[tuple[float, str, dict[str, Any]]] = []  # (time, topic, message)
        self.present_at_publish: list[frozenset[str]] = []  # who was in the room, per publish
        self.lost: list[dict[str, Any]] = []  # commands nobody was there to receive
        self.events: list[dict[str, Any]] = []  # what the agent published
        self.connected_with: tuple[str, str] | None = None
        self.session_id: str | None = None
        self.participants: set[str] = set()
        self.closed = 0
        self._joined: anyio.Event | None = None  # made in connect(): needs an event loop
        self._on_data: Callable[[str, bytes], None] | None = None
        self._on_disconnected: Callable[[str], None] | None = None
        self._background: list[Background] = []
        self._speaking: dict[str, anyio.CancelScope] = {}

    @property
    def agent_identity(self) -> str:
        return f"{AGENT_PREFIX}{self.session_id}"

    async def connect(
        self,
        url: str,
        token: str,
        *,
        on_data: Callable[[str, bytes], None],
        on_disconnected: Callable[[str], None],
    ) -> None:
        self.connected_with = (url, token)
        # the fake's LiveKit tokens are "agent-<session_id>" and "viewer-<session_id>"
        self.session_id = token.split("-", 1)[1] if "-" in token else token
        self._joined = anyio.Event()
        self._on_data = on_data
        self._on_disconnected = on_disconnected
        for identity in (AVATAR_IDENTITY, self.agent_identity):
            delay = self.join_delays.get(identity, 0.0)
            if delay == 0.0:
                self.participants.add(identity)
            elif delay is not None:
                self._spawn(self._join_later(identity, delay))

    async def _join_later(self, identity: str, delay: float) -> None:
        await anyio.sleep(delay)
        self.participants.add(identity)
        assert self._joined is not None
        self._joined.set()
        self._joined = anyio.Event()

    def _spawn(self, coro: Any) -> None:
        async def run() -> None:
            await coro

        task = Background(run, name="fake-room")
        self._background.append(task)
        task.start()

    async def wait_for_participants(self, identities: Collection[str], seconds: float) -> set[str]:
        with anyio.move_on_after(seconds):
            while not set(identities) <= self.participants and self._joined is not None:
                await self._joined.wait()
        return set(identities) - self.participants

    def emit(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """LiveAvatar's agent publishes a data message."""
        assert self._on_data is not None
        if isinstance(payload, dict):
            self.events.append(payload)
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
        self.present_at_publish.append(frozenset(self.participants))
        if topic != CONTROL_TOPIC:
            return
        if self.agent_identity not in self.participants:
            self.lost.append(message)  # LiveAvatar's agent is not there to hear it
            return
        kind = message.get("event_type")
        if kind == "avatar.speak_text":
            command_id = message["event_id"]
            self.emit(RESPONSE_TOPIC, self._event("avatar.speak_started", command_id))
            words = len(message["text"].split())
            self._spawn(self._finish(command_id, words))
        elif kind == "avatar.interrupt":
            for scope in self._speaking.values():
                scope.cancel()

    def _event(self, kind: str, command_id: str) -> dict[str, Any]:
        event: dict[str, Any] = {"event_type": kind, "session_id": self.session_id}
        if self.echo_event_id:
            event["event_id"] = uuid.uuid4().hex
            event["source_event_id"] = command_id
        return event

    async def _finish(self, command_id: str, words: int) -> None:
        with anyio.CancelScope() as scope:
            self._speaking[command_id] = scope
            await anyio.sleep(self.seconds_per_word * words)
            self.emit(RESPONSE_TOPIC, self._event("avatar.speak_ended", command_id))
        self._speaking.pop(command_id, None)

    async def close(self) -> None:
        self.closed += 1
        for task in self._background:
            await task.stop()
