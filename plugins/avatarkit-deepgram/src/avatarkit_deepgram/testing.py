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
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from avatarkit.testing import (
    FakeWebSocketConnection,
    LinkFaults,
    LoopbackWebSocketServer,
    Refusal,
)
from avatarkit.tonespeech import RecognisedWord, ToneRecogniser

if TYPE_CHECKING:
    from websockets.sync.server import ServerConnection

__all__ = ["API_KEY", "Connection", "FakeDeepgram", "Knobs"]

#: The key the fake accepts (Deepgram keys are 40 hex digits).
API_KEY = "0123456789abcdef0123456789abcdef01234567"
NET0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)


@dataclass
class Knobs(LinkFaults):
    """How the fake behaves; change before (or while) a client connects."""

    #: Answer the next N handshakes with 503.
    refuse_handshakes: int = 0
    #: Close with 1011 (NET-0001) when nothing arrives for this long (Deepgram: 10 s).
    idle_timeout: float = 10.0
    #: Fix the text (is_final, not speech_final) every N words of a long stretch.
    final_every: int = 4
    #: Do not answer CloseStream (the client must give up by itself).
    ignore_close_stream: bool = False
    #: Close every connection with this (code, reason) once it received ``close_after`` s.
    close_with: tuple[int, str] | None = None
    close_after: float = 0.5


class Connection(FakeWebSocketConnection):
    """One WebSocket the fake accepted, and everything that crossed it (``received``: text
    messages; ``ended``: "closed", "dropped", "idle", "client" or "frozen")."""


class FakeDeepgram(LoopbackWebSocketServer):
    """The fake service; use as a context manager. ``base_url`` is what the STT is given."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.knobs = Knobs()
        self.connections: list[Connection] = []

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def refuse(self, path: str, headers: dict[str, str]) -> Refusal | None:
        query = Connection(0, path, headers).query
        status, message, code = 101, "", ""
        if urlsplit(path).path != "/v1/listen":
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
        if status == 101:
            return None
        request_id = str(uuid.uuid4())
        return Refusal(
            status,
            {"err_code": code, "err_msg": message, "request_id": request_id},
            [("dg-error", message), ("dg-request-id", request_id)],
        )

    def new_connection(self, index: int, path: str, headers: dict[str, str]) -> Connection:
        return Connection(index, path, headers)

    def converse(self, ws: ServerConnection, conn: Connection) -> None:
        _Stream(self, ws, conn).serve()


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
                self.fake.close_draining(self.ws, 1011, NET0001)
                return
            if isinstance(data, bytes):
                self.audio(data)
                if knobs.close_with is not None and len(self.conn.audio) >= (
                    knobs.close_after * self.rate * 2
                ):
                    self.conn.ended = "closed"
                    self.fake.close_draining(self.ws, *knobs.close_with)
                    return
                fault = knobs.due(self.conn, self.rate)
                if fault is not None:
                    self.fake.fail(self.ws, self.conn, fault)
                    return
                continue
            try:
                message = json.loads(data)
                kind = message["type"]
            except (ValueError, KeyError, TypeError):
                self.fake.violations.append(f"not a control message: {data[:200]!r}")
                self.fake.close_draining(self.ws, 1008, "Invalid control message.")
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
