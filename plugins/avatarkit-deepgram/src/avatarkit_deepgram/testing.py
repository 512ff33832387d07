"""A fake Deepgram live-transcription server on 127.0.0.1, for tests and benchmarks.

It speaks the protocol of ``/v1/listen`` (see :mod:`avatarkit_deepgram.protocol`): the
``Authorization: Token`` handshake (401 with Deepgram's error body otherwise), binary PCM16
frames, ``KeepAlive`` / ``Finalize`` / ``CloseStream``, and ``Results`` (interim, ``is_final``
every few words, ``speech_final`` after ``endpointing`` ms of silence), ``SpeechStarted``,
``UtteranceEnd`` and ``Metadata``. It closes an idle stream with 1011 as Deepgram does.

It *recognises* what it receives: send audio made by :func:`avatarkit.tonespeech.tone_speech`
and it transcribes those words from the samples that actually arrived, timed in audio seconds
(not wall-clock), so a test can check that nothing was lost or sent twice. The server runs in
background threads (asyncio and trio tests alike) and needs the ``websockets`` package (the
``testing`` extra).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio

from avatarkit.tonespeech import RecognisedWord, ToneRecogniser

if TYPE_CHECKING:
    from websockets.http11 import Request, Response
    from websockets.sync.server import Server, ServerConnection

__all__ = ["API_KEY", "Connection", "FakeDeepgram", "Knobs"]

#: The key the fake accepts (Deepgram keys are 40 hex digits).
API_KEY = "0123456789abcdef0123456789abcdef01234567"
NET0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)


@dataclass
class Knobs:
    """How the fake behaves; change before (or while) a client connects."""

    #: Cut the TCP connection (no close frame) once a connection received this much audio (s)...
    drop_after_audio: float | None = None
    #: ...on this many connections (the first ones).
    drops: int = 1
    #: Answer the next N handshakes with 503.
    refuse_handshakes: int = 0
    #: Answer every handshake after the first connection with 503 (a lasting outage).
    refuse_reconnects: bool = False
    #: Close with 1011 (NET-0001) when nothing arrives for this long (Deepgram: 10 s).
    idle_timeout: float = 10.0
    #: Fix the text (is_final, not speech_final) every N words of a long stretch.
    final_every: int = 4
    #: Do not answer CloseStream (the client must give up by itself).
    ignore_close_stream: bool = False
    #: Stop reading and answering pings (a half-open connection) once a connection received
    #: this much audio (s), on the first ``drops`` connections.
    freeze_after_audio: float | None = None
    #: Close every connection with this (code, reason) once it received ``close_after`` s.
    close_with: tuple[int, str] | None = None
    close_after: float = 0.5


@dataclass
class Connection:
    """One WebSocket the fake accepted, and everything that crossed it."""

    index: int
    query: dict[str, list[str]]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    received: list[dict[str, Any]] = field(default_factory=list)  # text messages, in order
    sent: list[dict[str, Any]] = field(default_factory=list)
    ended: str | None = None  # "closed", "dropped", "idle", "client", "frozen"
    frozen: bool = False

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class FakeDeepgram:
    """The fake service; use as a context manager. ``base_url`` is what the STT is given."""

    def __init__(self, api_key: str = API_KEY) -> None:
        from websockets.sync.server import ServerConnection, serve

        class _HalfOpenable(ServerConnection):
            """Answers no ping once its connection is frozen."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                protocol_send = self.protocol.send_frame

                def send_frame(frame: Any) -> None:
                    from websockets.frames import Opcode

                    conn = getattr(self, "fake_connection", None)
                    if conn is not None and conn.frozen and frame.opcode is Opcode.PONG:
                        return
                    protocol_send(frame)

                self.protocol.send_frame = send_frame  # type: ignore[method-assign]

        self.api_key = api_key
        self.stopping = threading.Event()
        self.knobs = Knobs()
        self.connections: list[Connection] = []
        self.handshakes: list[tuple[str, dict[str, str], int]] = []  # path, headers, status
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._server: Server = serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._handshake,
            compression=None,
            create_connection=_HalfOpenable,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDeepgram:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"

    # -- views for assertions --------------------------------------------------------------------

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Text messages received on every connection (of one ``type``, or all)."""
        with self._lock:
            return [m for c in self.connections for m in c.received if kind in (None, m["type"])]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        """Poll (bounded) until ``predicate()`` holds: the fake runs in other threads."""
        with anyio.fail_after(seconds):
            while not predicate():  # noqa: ASYNC110 - the state changes in another thread
                await anyio.sleep(0.005)

    # -- the handshake -----------------------------------------------------------------------

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        path = urlsplit(request.path).path
        query = parse_qs(urlsplit(request.path).query)
        status, message, code = 101, "", ""
        if path != "/v1/listen":
            status, message, code = 404, "Not found.", "NOT_FOUND"
        elif headers.get("authorization") != f"Token {self.api_key}":
            status, message, code = 401, "Invalid credentials.", "INVALID_AUTH"
        elif (
            query.get("encoding") != ["linear16"] or not query.get("sample_rate", [""])[0].isdigit()
        ):
            status, message, code = 400, "encoding=linear16 needs a sample_rate.", "Bad Request"
        elif self.knobs.refuse_handshakes > 0 or (
            self.knobs.refuse_reconnects and self.connections
        ):
            self.knobs.refuse_handshakes = max(0, self.knobs.refuse_handshakes - 1)
            status, message, code = 503, "Service unavailable.", "SERVICE_UNAVAILABLE"
        with self._lock:
            self.handshakes.append((request.path, headers, status))
        if status == 101:
            return None
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        request_id = str(uuid.uuid4())
        body = json.dumps({"err_code": code, "err_msg": message, "request_id": request_id})
        return Response(
            status,
            "Error",
            Headers(
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("dg-error", message),
                    ("dg-request-id", request_id),
                ]
            ),
            body.encode(),
        )

    # -- one stream ----------------------------------------------------------------------------

    def _handle(self, ws: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        request = ws.request
        assert request is not None
        with self._lock:
            conn = Connection(
                len(self.connections),
                parse_qs(urlsplit(request.path).query),
                {k.lower(): v for k, v in request.headers.raw_items()},
            )
            self.connections.append(conn)
        ws.fake_connection = conn  # type: ignore[attr-defined]
        stream = _Stream(self, ws, conn)
        try:
            stream.serve()
        except ConnectionClosed:
            conn.ended = conn.ended or "client"
        except OSError:
            conn.ended = conn.ended or "dropped"


class _Stream:
    """What Deepgram does with one connection's audio; times are audio seconds."""

    def __init__(self, fake: FakeDeepgram, ws: ServerConnection, conn: Connection) -> None:
        self.fake, self.ws, self.conn = fake, ws, conn
        p = conn.param
        self.rate = int(p("sample_rate") or 16000)
        self.interim = p("interim_results") == "true"
        self.vad_events = p("vad_events") == "true"
        endpointing = p("endpointing") or "10"
        self.endpointing = None if endpointing == "false" else int(endpointing) / 1000
        utterance_end = p("utterance_end_ms")
        self.utterance_end = int(utterance_end) / 1000 if utterance_end else None
        self.request_id = str(uuid.uuid4())
        self.recogniser = ToneRecogniser(self.rate)
        self.stretch: list[RecognisedWord] = []
        self.stretch_start = 0.0
        self.in_utterance = False  # between a word's start and the endpoint
        self.endpoint_due = False  # words since the last speech_final
        self.utterance_open = False  # words since the last UtteranceEnd

    def send(self, message: dict[str, Any]) -> None:
        self.conn.sent.append(message)
        self.ws.send(json.dumps(message))

    def serve(self) -> None:
        knobs = self.fake.knobs
        while True:
            try:
                data = self.ws.recv(timeout=knobs.idle_timeout)
            except TimeoutError:
                self.conn.ended = "idle"
                self.ws.close(1011, NET0001)
                return
            if isinstance(data, bytes):
                self.audio(data)
                if knobs.close_with is not None and len(self.conn.audio) >= (
                    knobs.close_after * self.rate * 2
                ):
                    self.conn.ended = "closed"
                    self.ws.close(*knobs.close_with)
                    return
                freeze = knobs.freeze_after_audio
                if (
                    freeze is not None
                    and self.conn.index < knobs.drops
                    and len(self.conn.audio) >= freeze * self.rate * 2
                ):
                    self.conn.frozen = True
                    self.conn.ended = "frozen"
                    while not self.fake.stopping.wait(0.05):  # hold the socket, say nothing
                        pass
                    self.ws.socket.shutdown(socket.SHUT_RDWR)
                    return
                drop = knobs.drop_after_audio
                if (
                    drop is not None
                    and self.conn.index < knobs.drops
                    and len(self.conn.audio) >= drop * self.rate * 2
                ):
                    self.conn.ended = "dropped"
                    self.ws.socket.shutdown(socket.SHUT_RDWR)
                    return
                continue
            try:
                message = json.loads(data)
                kind = message["type"]
            except (ValueError, KeyError, TypeError):
                self.fake.violations.append(f"not a control message: {data[:200]!r}")
                self.ws.close(1008, "Invalid control message.")
                return
            with self.fake._lock:
                self.conn.received.append(message)
            if kind == "KeepAlive":
                continue
            if kind == "Finalize":
                self.final(speech_final=False, from_finalize=True)
            elif kind == "CloseStream":
                if knobs.ignore_close_stream:
                    continue
                self.stretch += self.recogniser.flush()
                if self.stretch:
                    self.final(speech_final=False)
                self.send(self.metadata())
                self.conn.ended = "closed"
                self.ws.close(1000)
                return
            else:
                self.fake.violations.append(f"unknown control message {kind!r}")

    def audio(self, data: bytes) -> None:
        if len(data) % 2:
            self.fake.violations.append(f"a binary frame of {len(data)} bytes (odd: not PCM16)")
        self.conn.audio += data
        step = 2 * round(0.01 * self.rate)
        for i in range(0, len(data), step):
            self.advance(data[i : i + step])

    def advance(self, data: bytes) -> None:
        rec = self.recogniser
        words = rec.feed(data)
        if rec.speech_started is not None and not self.in_utterance:
            self.in_utterance = True
            if self.vad_events:
                self.send(
                    {"type": "SpeechStarted", "channel": [0], "timestamp": rec.speech_started}
                )
        for word in words:
            self.stretch.append(word)
            self.endpoint_due = self.utterance_open = True
            if self.interim:
                self.send(self.results(is_final=False))
            if len(self.stretch) >= self.fake.knobs.final_every:
                self.final(speech_final=False)
        if rec.speech_started is not None or rec.last_word_end is None:
            return
        silence = rec.time - rec.last_word_end
        if self.endpointing is not None and self.endpoint_due and silence >= self.endpointing:
            self.final(speech_final=True)
        if self.utterance_end is not None and self.utterance_open and silence >= self.utterance_end:
            self.utterance_open = False
            self.in_utterance = False
            self.send(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": rec.last_word_end}
            )
        if self.endpointing is None and self.utterance_end is None:
            self.in_utterance = False

    def final(self, *, speech_final: bool, from_finalize: bool = False) -> None:
        self.send(self.results(True, speech_final=speech_final, from_finalize=from_finalize))
        self.stretch = []
        self.stretch_start = self.recogniser.time
        if speech_final:
            self.endpoint_due = False
            self.in_utterance = False

    def results(
        self, is_final: bool, *, speech_final: bool = False, from_finalize: bool = False
    ) -> dict[str, Any]:
        words = [
            {
                "word": w.word,
                "start": w.start,
                "end": w.end,
                "confidence": 0.99,
                "punctuated_word": w.word,
            }
            for w in self.stretch
        ]
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(self.recogniser.time - self.stretch_start, 3),
            "start": round(self.stretch_start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(w.word for w in self.stretch),
                        "confidence": 0.99 if words else 0.0,
                        "words": words,
                    }
                ]
            },
            "metadata": {"request_id": self.request_id, "model_info": {"name": "fake"}},
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration": round(self.recogniser.time, 3),
            "channels": 1,
        }
