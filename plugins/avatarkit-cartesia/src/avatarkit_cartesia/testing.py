"""A fake Cartesia TTS WebSocket on 127.0.0.1 for tests.

It speaks the documented protocol: ``Authorization: Bearer`` and ``Cartesia-Version`` on the
handshake (a bad key is refused with 401), generation requests with ``context_id``, ``voice``,
``output_format`` and ``continue``; text buffered per context until a sentence ends, a
``flush``, ``continue: false`` or 40 characters; then ``chunk`` messages (base64 PCM),
``timestamps`` (words with start/end seconds from the context's first sample), ``flush_done``
and ``done``; ``{"context_id", "cancel": true}`` stops a context; errors are ``{"type":
"error", ...}`` messages.

Needs ``websockets`` (the ``testing`` extra). Audio is a tone of ``ms_per_char`` per character.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from avatarkit.testing import tone

if TYPE_CHECKING:
    from websockets.sync.server import Server, ServerConnection

__all__ = ["FakeCartesia", "Knobs"]

KEY = "sk_car_test0123456789abcdefSECRET"
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


@dataclass
class Knobs:
    """What the fake does; change between or during tests."""

    key: str = KEY
    voices: set[str] = field(default_factory=lambda: {VOICE})
    ms_per_char: float = 10.0
    #: Most characters of audio in one ``chunk`` message.
    chars_per_chunk: int = 16
    #: Seconds to wait before each generation (a slow service).
    delay: float = 0.0
    #: Drop the TCP connection after this many ``chunk`` messages.
    drop_after_chunks: int | None = None
    #: Echo the key sent in error messages: the client must scrub it.
    echo_key_in_errors: bool = True


@dataclass
class _Context:
    buffer: str = ""
    spoken_chars: int = 0
    flushes: int = 0
    cancelled: bool = False
    done: bool = False


def _pcm(chars: int, rate: int, ms_per_char: float) -> bytes:
    """``ms_per_char`` of a 220 Hz tone per character (peak 12000)."""
    return tone(chars * ms_per_char / 1000, rate, level=12000 / 32767)


class FakeCartesia:
    """Use as a context manager; ``base_url`` is the (http) base URL to configure."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.knobs = Knobs()
        self.received: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        #: Contexts whose socket closed before they were done (generation stops with it).
        self.abandoned: list[str] = []
        self.connections = 0
        self.closed_by_client = 0
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._chunks_sent = 0
        self._ws: Server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._handshake, max_size=None
        )
        self._thread = threading.Thread(target=self._ws.serve_forever, daemon=True)

    def __enter__(self) -> FakeCartesia:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ws.shutdown()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._ws.socket.getsockname()[1]}"

    def stopped(self, context_id: str) -> bool:
        """Whether ``context_id`` was cancelled or left unfinished by a closed socket."""
        with self._lock:
            return context_id in self.cancelled or context_id in self.abandoned

    def transcript(self, context_id: str | None = None) -> str:
        """The text sent, joined (for one context, or all)."""
        with self._lock:
            return "".join(
                str(m.get("transcript", ""))
                for m in self.received
                if context_id is None or m.get("context_id") == context_id
            )

    def _handshake(self, connection: ServerConnection, request: Any) -> Any:
        if request.path.split("?")[0].rstrip("/") != "/tts/websocket":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if not request.headers.get("Cartesia-Version"):
            return connection.respond(HTTPStatus.BAD_REQUEST, "missing Cartesia-Version\n")
        auth = request.headers.get("Authorization") or ""
        if auth != f"Bearer {self.knobs.key}":
            shown = f" {auth.removeprefix('Bearer ')}" if self.knobs.echo_key_in_errors else ""
            body = json.dumps({"error": f"Invalid API key{shown}", "status_code": 401})
            response = connection.respond(HTTPStatus.UNAUTHORIZED, body)
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    def _handle(self, ws: ServerConnection) -> None:
        """Read in a thread of its own, as the service does: a ``cancel`` takes effect while a
        generation is still being sent."""
        from websockets.exceptions import ConnectionClosed

        with self._lock:
            self.connections += 1
        contexts: dict[str, _Context] = {}
        inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

        def read() -> None:
            try:
                while True:
                    message = json.loads(ws.recv())
                    with self._lock:
                        self.received.append(message)
                        if message.get("cancel") is True:
                            cid = str(message.get("context_id"))
                            self.cancelled.append(cid)
                            contexts.setdefault(cid, _Context()).cancelled = True
                            continue
                    inbox.put(message)
            except ConnectionClosed as exc:
                if exc.rcvd is None or exc.rcvd.code == 1000:
                    with self._lock:
                        self.closed_by_client += 1
            except OSError:
                pass
            finally:
                inbox.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            self._serve(ws, contexts, inbox)
        except (ConnectionClosed, OSError):
            pass
        reader.join(timeout=5)
        with self._lock:
            # websockets drops a message that arrives just before the close frame, so a
            # ``cancel`` sent right before closing may never be read here: count the close.
            self.abandoned.extend(c for c, ctx in contexts.items() if not ctx.done)

    def _serve(
        self,
        ws: ServerConnection,
        contexts: dict[str, _Context],
        inbox: queue.Queue[dict[str, Any] | None],
    ) -> None:
        while True:
            message = inbox.get()
            if message is None:
                return
            cid = message.get("context_id")
            if not isinstance(cid, str) or not cid:
                self.violations.append(f"message without context_id: {message!r}")
                continue
            problem = self._check(message)
            if problem:
                self.violations.append(problem)
            voice = (message.get("voice") or {}).get("id")
            if voice not in self.knobs.voices:
                ws.send(
                    json.dumps(
                        {
                            "type": "error",
                            "context_id": cid,
                            "status_code": 404,
                            "error_code": "voice_not_found",
                            "title": "Voice not found",
                            "message": f"Voice {voice} was not found.",
                            "done": True,
                        }
                    )
                )
                continue
            with self._lock:
                context = contexts.setdefault(cid, _Context())
            if context.cancelled:
                continue
            context.buffer += str(message.get("transcript", ""))
            rate = int(message["output_format"]["sample_rate"])
            final = message.get("continue") is False
            if message.get("flush") or final:
                cut = len(context.buffer)
            else:
                ends = [m.end() for m in re.finditer(r"[.!?]\s", context.buffer)]
                cut = ends[-1] if ends else 0
                if not cut and len(context.buffer) >= 40:
                    cut = context.buffer.rfind(" ") + 1
            if cut and not self._generate(ws, cid, context, context.buffer[:cut], rate):
                return
            context.buffer = context.buffer[cut:]
            if message.get("flush"):
                context.flushes += 1
                ws.send(
                    json.dumps(
                        {
                            "type": "flush_done",
                            "context_id": cid,
                            "flush_done": True,
                            "flush_id": context.flushes,
                            "done": False,
                            "status_code": 206,
                        }
                    )
                )
            if final:
                context.done = True
                ws.send(
                    json.dumps(
                        {"type": "done", "context_id": cid, "done": True, "status_code": 206}
                    )
                )

    @staticmethod
    def _check(message: dict[str, Any]) -> str | None:
        fmt = message.get("output_format") or {}
        if fmt.get("container") != "raw" or fmt.get("encoding") != "pcm_s16le":
            return f"output_format is not raw pcm_s16le: {fmt!r}"
        for name in ("model_id", "voice", "transcript", "continue"):
            if name not in message:
                return f"generation request without {name}: {message!r}"
        return None

    def _generate(
        self, ws: ServerConnection, cid: str, context: _Context, text: str, rate: int
    ) -> bool:
        """Speak ``text`` for ``cid``; False after a simulated drop."""
        knobs = self.knobs
        if not text:
            return True
        if knobs.delay:
            time.sleep(knobs.delay)
        ms = knobs.ms_per_char
        words, starts, ends = [], [], []
        for match in re.finditer(r"\S+", text):
            words.append(match.group())
            starts.append(round((context.spoken_chars + match.start()) * ms / 1000, 4))
            ends.append(round((context.spoken_chars + match.end()) * ms / 1000, 4))
        step = knobs.chars_per_chunk
        for offset in range(0, len(text), step):
            if context.cancelled:
                return True
            if knobs.drop_after_chunks is not None and self._chunks_sent >= knobs.drop_after_chunks:
                import socket

                ws.socket.shutdown(socket.SHUT_RDWR)
                return False
            piece = text[offset : offset + step]
            data = base64.b64encode(_pcm(len(piece), rate, ms)).decode()
            ws.send(
                json.dumps(
                    {
                        "type": "chunk",
                        "context_id": cid,
                        "data": data,
                        "done": False,
                        "status_code": 206,
                        "step_time": 1.0,
                    }
                )
            )
            self._chunks_sent += 1
        if words:
            ws.send(
                json.dumps(
                    {
                        "type": "timestamps",
                        "context_id": cid,
                        "done": False,
                        "status_code": 206,
                        "word_timestamps": {"words": words, "start": starts, "end": ends},
                    }
                )
            )
        context.spoken_chars += len(text)
        return True
