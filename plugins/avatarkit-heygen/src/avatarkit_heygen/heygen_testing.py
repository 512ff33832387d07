"""A fake HeyGen streaming API (and an application backend in front of it) on 127.0.0.1.

For tests of code that drives HeyGen, ours and plugin users' alike (public testing API, as
:mod:`avatarkit_heygen.liveavatar_testing` is for LiveAvatar). Built from the wire contract
(docs: providers/heygen) and held to HeyGen's official ``@heygen/streaming-avatar`` SDK, which the
suite runs against it: the same paths, bodies, status codes and both error shapes, the account's
``x-api-key`` or a session token from ``streaming.create_token`` sent as
``Authorization: Bearer <token>``. Each server runs in a background thread (stdlib
``ThreadingHTTPServer``), so tests run on asyncio and on trio, and records every call.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["API_KEY", "AVATAR", "BACKEND_TOKEN", "Call", "FakeBackend", "FakeHeyGen", "Fault"]

API_KEY = "hg-test-key-5a3f"
BACKEND_TOKEN = "backend-token-77c1"
AVATAR = "Wayne_20240711"


@dataclass
class Call:
    op: str
    body: dict[str, Any]
    headers: dict[str, str]
    answered_at: float | None = None  # time.monotonic() when the answer was sent


@dataclass
class Fault:
    """One canned failure answer for an operation."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[_Server, threading.Thread]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return server, thread


class FakeHeyGen:
    """HeyGen's ``/v1/streaming.*`` endpoints with sessions, a concurrent limit and faults."""

    def __init__(self) -> None:
        self.api_key = API_KEY
        self.avatars = {AVATAR, "default"}
        self.max_sessions = 2
        self.ms_per_char = 2  # duration_ms HeyGen reports for a task, per character
        self.durations: dict[str, int] = {}  # duration_ms for particular texts
        self.report_duration = True
        self.report_task_id = True
        self.task_hang = 0.0  # seconds a task request is held before answering
        self.hold: dict[str, float] = {}  # op -> seconds any request is held before answering
        self.calls: list[Call] = []
        self.sessions: dict[str, str] = {}  # id -> "new" | "started" | "stopped"
        self.tokens: set[str] = set()  # session tokens from streaming.create_token
        self.faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._count = 0
        self.release = threading.Event()  # ends a held task early at teardown
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.server, self.thread = _serve(Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- test helpers ------------------------------------------------------------------------

    def ops(self, *names: str) -> list[str]:
        return [c.op for c in self.calls if not names or c.op in names]

    def bodies(self, op: str) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.op == op]

    def texts(self) -> list[str]:
        return [b.get("text", "") for b in self.bodies("task")]

    def fail(self, op: str, status: int, body: Any = None, *, times: int = 1, **kw: Any) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        self.faults.setdefault(op, []).extend(Fault(status, raw, **kw) for _ in range(times))

    def open_sessions(self) -> list[str]:
        return [s for s, status in self.sessions.items() if status != "stopped"]

    def __enter__(self) -> FakeHeyGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- the wire protocol -------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        path = request.path
        if not path.startswith("/v1/streaming."):
            return self._send(request, 404, {"code": 404, "message": "Not Found"})
        op = path.removeprefix("/v1/streaming.")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return self._send(request, 400, {"code": 400, "message": "invalid JSON body"})
        call = Call(op, body, {k.lower(): v for k, v in request.headers.items()})
        with self._lock:
            self.calls.append(call)
            fault = self.faults.get(op, []).pop(0) if self.faults.get(op) else None
        if self.hold.get(op):
            self.release.wait(self.hold[op])
        try:
            self._answer(request, op, method, body, fault)
        finally:
            call.answered_at = time.monotonic()

    def _answer(
        self,
        request: BaseHTTPRequestHandler,
        op: str,
        method: str,
        body: dict[str, Any],
        fault: Fault | None,
    ) -> None:
        if fault is not None:
            return self._raw(request, fault.status, fault.body, fault.content_type, fault.headers)
        if not self._authorized(request, op):
            return self._send(
                request, 401, {"error": {"code": "invalid_api_key", "message": "Unauthorized"}}
            )
        if (op == "list") != (method == "GET"):
            return self._send(request, 405, {"code": 405, "message": "Method Not Allowed"})
        status, payload = self._operate(op, body)
        self._send(request, status, payload)

    def _authorized(self, request: BaseHTTPRequestHandler, op: str) -> bool:
        """The key in ``x-api-key``, or (for all but ``create_token``) a session token as
        ``Authorization: Bearer``, the way the official SDK calls from a browser."""
        if request.headers.get("x-api-key") == self.api_key:
            return True
        auth = request.headers.get("authorization") or ""
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        return op != "create_token" and token in self.tokens

    def _operate(self, op: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ok: dict[str, Any] = {"code": 100, "message": "success", "data": None}
        if op == "create_token":
            token = f"hg-session-{uuid.uuid4().hex}"
            with self._lock:
                self.tokens.add(token)
            ok["data"] = {"token": token}
            return 200, ok
        if op == "list":
            ok["data"] = {
                "sessions": [
                    {"session_id": s, "status": st, "created_at": 0}
                    for s, st in self.sessions.items()
                    if st != "stopped"
                ]
            }
            return 200, ok
        if op == "new":
            avatar = body.get("avatar_id") or body.get("avatar_name")
            if avatar not in self.avatars:
                return 400, {"code": 400, "message": f"Avatar {avatar} not found or not allowed"}
            with self._lock:
                if len(self.open_sessions()) >= self.max_sessions:
                    return 400, {
                        "code": 10007,
                        "message": "Concurrent limit reached, please close other testing "
                        "sessions and try again",
                    }
                self._count += 1
                session_id = f"sess-{self._count:04d}"
                self.sessions[session_id] = "new"
            ok["data"] = {
                "session_id": session_id,
                "url": "wss://127.0.0.1:7881",
                "access_token": f"lk-viewer-{session_id}",
                "realtime_endpoint": f"wss://127.0.0.1:7882/{session_id}",
                "session_duration_limit": 600,
                "is_paid": True,
            }
            return 200, ok
        # start_listening / stop_listening: the official SDK's idle-animation calls
        session_ops = ("start", "task", "interrupt", "keep_alive", "stop")
        if op not in (*session_ops, "start_listening", "stop_listening"):
            return 404, {"code": 404, "message": f"unknown operation streaming.{op}"}
        session_id = str(body.get("session_id"))
        status = self.sessions.get(session_id)
        if status is None:
            return 400, {"code": 10005, "message": "Session not found"}
        if status == "stopped":
            return 400, {"code": 10006, "message": "Session is closed"}
        if op == "start":
            self.sessions[session_id] = "started"
            return 200, ok
        if op == "stop":
            self.sessions[session_id] = "stopped"
            return 200, ok
        if status != "started":
            return 400, {"code": 400, "message": "Session is not started"}
        if op == "task":
            text = body.get("text")
            if not text or body.get("task_type") not in ("repeat", "talk"):
                return 400, {"code": 400, "message": "text and task_type are required"}
            if self.task_hang:
                self.release.wait(self.task_hang)
            data: dict[str, Any] = {}
            if self.report_task_id:
                data["task_id"] = f"task-{len(self.bodies('task'))}"
            if self.report_duration:
                data["duration_ms"] = self.durations.get(text, len(text) * self.ms_per_char)
            ok["data"] = data
        return 200, ok

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        FakeHeyGen._raw(request, status, json.dumps(payload).encode(), "application/json", {})

    @staticmethod
    def _raw(
        request: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str],
    ) -> None:
        request.send_response(status)
        request.send_header("content-type", content_type)
        request.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        try:
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (cancelled): as a real server, carry on


class FakeBackend:
    """An application backend holding the HeyGen key, in front of :class:`FakeHeyGen`.

    Speaks the ``backend_url`` contract of docs/providers/heygen.md and forwards to HeyGen the
    way a real one would (new + start, task, interrupt, keep_alive, stop).
    """

    def __init__(self, heygen: FakeHeyGen, *, token: str | None = BACKEND_TOKEN) -> None:
        self.heygen = heygen
        self.token = token
        self.avatar = AVATAR
        self.calls: list[Call] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self.server, self.thread = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/heygen"

    def ops(self) -> list[str]:
        return [c.op for c in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def _heygen(self, op: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.heygen.base_url}/v1/streaming.{op}",
            data=json.dumps(body).encode(),
            headers={"x-api-key": API_KEY, "content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = json.loads(request.rfile.read(length) or b"{}")
        op = request.path.removeprefix("/heygen/")
        self.calls.append(Call(op, body, {k.lower(): v for k, v in request.headers.items()}))
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return FakeHeyGen._send(request, 401, {"detail": "missing or bad token"})
        if op == "session":
            status, answer = self._heygen("new", {"avatar_id": self.avatar, "version": "v2"})
            if status != 200:
                return FakeHeyGen._send(request, status, answer)
            data = answer["data"]
            status, answer = self._heygen("start", {"session_id": data["session_id"]})
            if status != 200:
                self._heygen("stop", {"session_id": data["session_id"]})
                return FakeHeyGen._send(request, status, answer)
            payload = {
                "session_id": data["session_id"],
                "livekit_url": data["url"],
                "livekit_token": data["access_token"],
            }
            return FakeHeyGen._send(request, 200, payload)
        if op == "task":
            status, answer = self._heygen(
                "task",
                {
                    "session_id": body.get("session_id"),
                    "text": body.get("text"),
                    "task_type": "repeat",
                    "task_mode": "async",
                },
            )
            if status != 200:
                return FakeHeyGen._send(request, 404 if status == 400 else status, answer)
            return FakeHeyGen._send(request, 200, answer.get("data") or {})
        mapping = {"interrupt": "interrupt", "keep_alive": "keep_alive", "close": "stop"}
        if op not in mapping:
            return FakeHeyGen._send(request, 404, {"detail": f"no endpoint {op}"})
        status, answer = self._heygen(mapping[op], {"session_id": body.get("session_id")})
        if status != 200:
            return FakeHeyGen._send(request, 404 if status == 400 else status, answer)
        FakeHeyGen._send(request, 200, {"ok": True})
