"""A fake OpenAI realtime transcription server on 127.0.0.1, for tests and benchmarks.

It speaks ``/v1/realtime?intent=transcription``: the ``Authorization: Bearer`` handshake (401
with the API's error body otherwise), ``session.created``, ``session.update`` checked and
answered with ``session.updated`` (or an ``error``), ``input_audio_buffer.append`` and
``.commit``, and a server VAD that sends ``speech_started`` / ``speech_stopped`` /
``committed``, then each item's transcription ``delta`` events and ``completed``.

It *recognises* what it receives: send audio made by :func:`avatarkit.tonespeech.tone_speech`
(at 24 kHz) and it transcribes those words from the samples that actually arrived, timed in
audio milliseconds, so a test can check that nothing was lost or sent twice. Runs in
background threads (asyncio and trio tests alike); needs ``websockets`` (the ``testing``
extra). Records WebSocket pings, to check keep-alive while no audio flows.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio

from avatarkit.tonespeech import RecognisedWord, ToneRecogniser

if TYPE_CHECKING:
    from websockets.http11 import Request, Response
    from websockets.sync.server import Server, ServerConnection

__all__ = ["API_KEY", "FakeRealtime", "Knobs", "RealtimeConnection"]

API_KEY = "sk-test-realtime-0123456789abcdef"
RATE = 24000


@dataclass
class Knobs:
    """How the fake behaves; change before (or while) a client connects."""

    #: Cut the TCP connection (no close frame) once a connection received this much audio (s)...
    drop_after_audio: float | None = None
    #: ...on this many connections (the first ones).
    drops: int = 1
    #: Answer every handshake after the first connection with 503 (a lasting outage).
    refuse_reconnects: bool = False
    #: Hold each item's ``completed`` until the next item's has been sent (out of order).
    complete_out_of_order: bool = False
    #: Fail the transcription of the item with this index (0-based) with ``.failed``.
    fail_item: int | None = None
    #: Stop reading and answering pings (a half-open connection) once a connection received
    #: this much audio (s), on the first ``drops`` connections.
    freeze_after_audio: float | None = None


@dataclass
class RealtimeConnection:
    """One WebSocket the fake accepted, and everything that crossed it."""

    index: int
    path: str
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    received: list[dict[str, Any]] = field(default_factory=list)  # all but appends
    sent: list[dict[str, Any]] = field(default_factory=list)
    appends: int = 0
    pings: int = 0
    frozen: bool = False
    ended: str | None = None  # "dropped", "client", "frozen"
    session: dict[str, Any] | None = None


class FakeRealtime:
    """The fake service; use as a context manager. ``base_url`` is what the STT is given."""

    def __init__(self, api_key: str = API_KEY) -> None:
        from websockets.sync.server import ServerConnection, serve

        self.api_key = api_key
        self.knobs = Knobs()
        self.connections: list[RealtimeConnection] = []
        self.handshakes: list[tuple[str, dict[str, str], int]] = []
        self.violations: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class _Recording(ServerConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                protocol_send = self.protocol.send_frame

                def send_frame(frame: Any) -> None:
                    from websockets.frames import Opcode

                    conn = getattr(self, "fake_connection", None)
                    if conn is not None and conn.frozen and frame.opcode is Opcode.PONG:
                        return  # a half-open connection answers no ping
                    protocol_send(frame)

                self.protocol.send_frame = send_frame  # type: ignore[method-assign]

            def process_event(self, event: Any) -> None:
                from websockets.frames import Opcode

                conn = getattr(self, "fake_connection", None)
                if getattr(event, "opcode", None) is Opcode.PING and conn is not None:
                    with fake._lock:
                        conn.pings += 1
                super().process_event(event)

        self._server: Server = serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._handshake,
            compression=None,
            create_connection=_Recording,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeRealtime:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """What ``base_url`` would be for the OpenAI API (``.../v1``)."""
        return f"http://127.0.0.1:{self._server.socket.getsockname()[1]}/v1"

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for c in self.connections for m in c.received if kind in (None, m["type"])]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        """Poll (bounded) until ``predicate()`` holds: the fake runs in other threads."""
        with anyio.fail_after(seconds):
            while not predicate():  # noqa: ASYNC110 - the state changes in another thread
                await anyio.sleep(0.005)

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        parts = urlsplit(request.path)
        status, message, code = 101, "", ""
        if parts.path != "/v1/realtime":
            status, message, code = 404, "Not found.", "not_found"
        elif headers.get("authorization") != f"Bearer {self.api_key}":
            status, code = 401, "invalid_api_key"
            message = "Incorrect API key provided: sk-wron*****1234."
        elif parse_qs(parts.query).get("intent") != ["transcription"]:
            status, message, code = 400, "intent=transcription is required here.", "bad_intent"
        elif self.knobs.refuse_reconnects and self.connections:
            status, message, code = 503, "The server is overloaded.", "server_error"
        with self._lock:
            self.handshakes.append((request.path, headers, status))
        if status == 101:
            return None
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        body = json.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        )
        return Response(
            status,
            "Error",
            Headers(
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("x-request-id", f"req_{status}"),
                ]
            ),
            body.encode(),
        )

    def _handle(self, ws: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        request = ws.request
        assert request is not None
        with self._lock:
            conn = RealtimeConnection(
                len(self.connections),
                request.path,
                {k.lower(): v for k, v in request.headers.raw_items()},
            )
            self.connections.append(conn)
        ws.fake_connection = conn  # type: ignore[attr-defined]
        try:
            _Session(self, ws, conn).serve()
        except ConnectionClosed:
            conn.ended = conn.ended or "client"
        except OSError:
            conn.ended = conn.ended or "dropped"


class _Session:
    """One transcription session; times are audio milliseconds of this connection."""

    def __init__(self, fake: FakeRealtime, ws: ServerConnection, conn: RealtimeConnection) -> None:
        self.fake, self.ws, self.conn = fake, ws, conn
        self.recogniser = ToneRecogniser(RATE)
        self.vad: dict[str, Any] | None = None
        self.items = 0
        self.item_id: str | None = None  # the item being spoken
        self.words: list[RecognisedWord] = []  # heard since the last commit
        self.previous: str | None = None
        self.held: list[dict[str, Any]] = []  # completions held back (out of order)
        self.events = 0

    def send(self, message: dict[str, Any]) -> None:
        self.events += 1
        message = {"event_id": f"event_{self.conn.index}_{self.events}", **message}
        self.conn.sent.append(message)
        self.ws.send(json.dumps(message))

    def serve(self) -> None:
        self.send(
            {
                "type": "session.created",
                "session": {"type": "transcription", "id": f"sess_{self.conn.index}"},
            }
        )
        while True:
            data = self.ws.recv()
            try:
                message = json.loads(data)
                kind = message["type"]
            except (ValueError, KeyError, TypeError):
                self.error("invalid_json", f"not an event: {str(data)[:100]}")
                continue
            if kind == "input_audio_buffer.append":
                self.conn.appends += 1
                self.append(message)
                freeze = self.fake.knobs.freeze_after_audio
                if (
                    freeze is not None
                    and self.conn.index < self.fake.knobs.drops
                    and len(self.conn.audio) >= freeze * RATE * 2
                ):
                    self.conn.frozen = True
                    self.conn.ended = "frozen"
                    self.ws.socket.settimeout(None)
                    while not self.fake.stopping.wait(0.05):  # hold the socket, say nothing
                        pass
                    self.ws.socket.shutdown(socket.SHUT_RDWR)  # no closing handshake to wait on
                    return
                drop = self.fake.knobs.drop_after_audio
                if (
                    drop is not None
                    and self.conn.index < self.fake.knobs.drops
                    and len(self.conn.audio) >= drop * RATE * 2
                ):
                    self.conn.ended = "dropped"
                    self.ws.socket.shutdown(socket.SHUT_RDWR)
                    return
                continue
            with self.fake._lock:
                self.conn.received.append(message)
            if kind == "session.update":
                self.update(message)
            elif kind == "input_audio_buffer.commit":
                self.commit(manual=True)
            else:
                self.error("unknown_event", f"unknown event type {kind!r}")

    def error(self, code: str, text: str) -> None:
        self.fake.violations.append(text)
        self.send(
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "code": code, "message": text},
            }
        )

    def update(self, message: dict[str, Any]) -> None:
        session = message.get("session") or {}
        audio_in = (session.get("audio") or {}).get("input") or {}
        if session.get("type") != "transcription":
            self.error("invalid_value", "session.type must be 'transcription' here")
            return
        if audio_in.get("format") != {"type": "audio/pcm", "rate": RATE}:
            self.error("invalid_value", f"unsupported audio format {audio_in.get('format')}")
            return
        if not (audio_in.get("transcription") or {}).get("model"):
            self.error("missing_required_parameter", "transcription.model is required")
            return
        self.conn.session = session
        self.vad = audio_in.get("turn_detection")
        self.send({"type": "session.updated", "session": session})

    def ms(self, seconds: float) -> int:
        return round(seconds * 1000)

    def append(self, message: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(message["audio"], validate=True)
        except (KeyError, ValueError):
            self.error("invalid_value", "audio must be base64")
            return
        if self.conn.session is None:
            self.fake.violations.append("audio appended before session.update")
        self.conn.audio += pcm
        step = 2 * round(0.01 * RATE)
        for i in range(0, len(pcm), step):
            self.advance(pcm[i : i + step])

    def advance(self, pcm: bytes) -> None:
        rec = self.recogniser
        self.words += rec.feed(pcm)
        vad = self.vad
        if vad is None:
            return
        padding = vad.get("prefix_padding_ms", 300) / 1000
        silence = vad.get("silence_duration_ms", 500) / 1000
        if rec.speech_started is not None and self.item_id is None:
            self.items += 1
            self.item_id = f"item_{self.conn.index}_{self.items}"
            start = max(0.0, rec.speech_started - padding)
            self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": self.ms(start),
                    "item_id": self.item_id,
                }
            )
        if (
            self.item_id is not None
            and rec.speech_started is None
            and rec.last_word_end is not None
            and rec.time - rec.last_word_end >= silence
        ):
            self.send(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": self.ms(rec.time),
                    "item_id": self.item_id,
                }
            )
            self.commit(manual=False)

    def commit(self, *, manual: bool) -> None:
        if manual:
            self.words += self.recogniser.flush()
            if not self.words:
                self.send(
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "code": "input_audio_buffer_commit_empty",
                            "message": "Error committing input audio buffer: buffer too small.",
                        },
                    }
                )
                return
            if self.item_id is None:
                self.items += 1
                self.item_id = f"item_{self.conn.index}_{self.items}"
        item_id = self.item_id
        assert item_id is not None
        self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self.previous,
                "item_id": item_id,
            }
        )
        self.previous, self.item_id = item_id, None
        words, self.words = self.words, []
        self.transcribe(item_id, [w.word for w in words])

    def transcribe(self, item_id: str, words: list[str]) -> None:
        index = int(item_id.rsplit("_", 1)[1]) - 1
        if self.fake.knobs.fail_item == index:
            self.send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {"type": "server_error", "code": "failed", "message": "boom"},
                }
            )
            return
        for n, word in enumerate(words):
            self.send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": word if n == 0 else f" {word}",
                }
            )
        completed = {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": " ".join(words),
            "usage": {"type": "duration", "seconds": round(time.time() % 1, 3)},
        }
        if self.fake.knobs.complete_out_of_order and not self.held:
            self.held.append(completed)
            return
        self.send(completed)
        while self.held:
            self.send(self.held.pop())
