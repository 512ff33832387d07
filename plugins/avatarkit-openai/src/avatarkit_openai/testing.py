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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from avatarkit.testing import (
    FakeWebSocketConnection,
    LinkFaults,
    LoopbackWebSocketServer,
    Refusal,
)
from avatarkit.tonespeech import RecognisedWord, ToneRecogniser

if TYPE_CHECKING:
    from websockets.sync.server import ServerConnection

__all__ = ["API_KEY", "FakeRealtime", "Knobs", "RealtimeConnection"]

API_KEY = "sk-test-realtime-0123456789abcdef"
RATE = 24000


@dataclass
class Knobs(LinkFaults):
    """How the fake behaves; change before (or while) a client connects."""

    #: Hold each item's ``completed`` until the next item's has been sent (out of order).
    complete_out_of_order: bool = False
    #: Fail the transcription of the item with this index (0-based) with ``.failed``.
    fail_item: int | None = None


@dataclass
class RealtimeConnection(FakeWebSocketConnection):
    """One WebSocket the fake accepted, and everything that crossed it (``received``: all but
    appends; ``ended``: "dropped", "client" or "frozen")."""

    appends: int = 0
    session: dict[str, Any] | None = None


class FakeRealtime(LoopbackWebSocketServer):
    """The fake service; use as a context manager. ``base_url`` is what the STT is given."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.knobs = Knobs()
        self.connections: list[RealtimeConnection] = []

    @property
    def base_url(self) -> str:
        """What ``base_url`` would be for the OpenAI API (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def refuse(self, path: str, headers: dict[str, str]) -> Refusal | None:
        parts = urlsplit(path)
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
        if status == 101:
            return None
        return Refusal(
            status,
            {"error": {"message": message, "type": "invalid_request_error", "code": code}},
            [("x-request-id", f"req_{status}")],
        )

    def new_connection(self, index: int, path: str, headers: dict[str, str]) -> RealtimeConnection:
        return RealtimeConnection(index, path, headers)

    def converse(self, ws: ServerConnection, conn: RealtimeConnection) -> None:
        _Session(self, ws, conn).serve()


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
                fault = self.fake.knobs.due(self.conn, RATE)
                if fault is not None:
                    self.fake.fail(self.ws, self.conn, fault)
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
