"""A fake ElevenLabs on 127.0.0.1 for tests: the stream-input WebSocket and the HTTP stream.

It speaks the documented wire protocol: ``xi-api-key`` header, a first message ``{"text": " "}``
with optional ``voice_settings``/``generation_config``, text buffered until the
``chunk_length_schedule`` (or ``flush``, or the closing ``{"text": ""}``) triggers a generation,
base64 PCM with per-character ``alignment`` timed from the start of each message's audio, then
``{"isFinal": true}`` and a normal close. Errors come as ``{"message", "error", "code"}``
followed by a 1008 close, the way the service reports a bad key or an unknown voice.

Needs ``websockets`` (the ``testing`` extra). Audio is a tone of ``ms_per_char`` per character,
so tests can tell exactly which characters' audio a renderer consumed.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from avatarkit.testing import tone

if TYPE_CHECKING:
    from websockets.sync.server import Server, ServerConnection

__all__ = ["FakeElevenLabs", "Knobs"]

KEY = "sk_test0123456789abcdef0123456789SECRET"
VOICE = "voice-test"
_DEFAULT_SCHEDULE = [120, 160, 250, 290]


@dataclass
class Knobs:
    """What the fake does; change between or during tests."""

    key: str = KEY
    voices: set[str] = field(default_factory=lambda: {VOICE})
    ms_per_char: float = 10.0
    #: Most characters of audio in one message (words then span messages).
    chars_per_message: int = 12
    #: Seconds to wait before each generation's first message (a slow service).
    delay: float = 0.0
    #: Reject a bad key at the HTTP handshake (401) rather than with an error message.
    auth_at_handshake: bool = False
    #: Drop the TCP connection after this many audio messages (a network failure).
    drop_after_messages: int | None = None
    #: Echo the key sent in error messages (some services do): the client must scrub it.
    echo_key_in_errors: bool = True


def _pcm(chars: int, rate: int, ms_per_char: float) -> bytes:
    """``ms_per_char`` of a 220 Hz tone per character (peak 12000)."""
    return tone(chars * ms_per_char / 1000, rate, level=12000 / 32767)


class FakeElevenLabs:
    """Use as a context manager; ``ws_url`` and ``http_url`` are the two base URLs."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.knobs = Knobs()
        self.received: list[dict[str, Any]] = []  # every client message, in order
        self.requests: list[dict[str, Any]] = []  # HTTP request bodies
        self.connections = 0
        self.closed_by_client = 0
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._ws: Server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._handshake, max_size=None
        )
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._http_handler())
        self._http.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._ws.serve_forever, daemon=True),
            threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True),
        ]

    def __enter__(self) -> FakeElevenLabs:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ws.shutdown()
        self._http.shutdown()
        self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def ws_url(self) -> str:
        return f"http://127.0.0.1:{self._ws.socket.getsockname()[1]}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def texts(self) -> str:
        """All text the client sent, joined (what the service was asked to say)."""
        with self._lock:
            return "".join(str(m.get("text", "")) for m in self.received)

    # -- WebSocket -----------------------------------------------------------------------------

    def _handshake(self, connection: ServerConnection, request: Any) -> Any:
        parts = urlsplit(request.path)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 4 or segments[:2] != ["v1", "text-to-speech"]:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if segments[3] != "stream-input":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        query = parse_qs(parts.query)
        fmt = query.get("output_format", ["mp3_44100_128"])[0]
        if not fmt.startswith("pcm_"):
            self.violations.append(f"output_format {fmt!r} is not raw PCM")
        key = request.headers.get("xi-api-key")
        if self.knobs.auth_at_handshake and key != self.knobs.key:
            body = json.dumps(
                {"detail": {"status": "invalid_api_key", "message": f"Invalid API key: {key}"}}
            )
            response = connection.respond(HTTPStatus.UNAUTHORIZED, body)
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    def _handle(self, ws: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._lock:
            self.connections += 1
        try:
            self._serve(ws)
        except ConnectionClosed as exc:
            if (exc.rcvd is not None and exc.rcvd.code == 1000) or exc.rcvd is None:
                with self._lock:
                    self.closed_by_client += 1
        except OSError:
            pass

    def _fail(self, ws: ServerConnection, error: str, message: str) -> None:
        ws.send(json.dumps({"message": message, "error": error, "code": 1008}))
        ws.close(1008, message[:100])

    def _serve(self, ws: ServerConnection) -> None:
        knobs = self.knobs
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        voice = parts.path.strip("/").split("/")[2]
        query = parse_qs(parts.query)
        rate = int(query.get("output_format", ["pcm_24000"])[0].removeprefix("pcm_") or 24000)
        key = ws.request.headers.get("xi-api-key")
        first = json.loads(ws.recv())
        with self._lock:
            self.received.append(first)
        if first.get("text") != " ":
            self.violations.append(f"first message text {first.get('text')!r}, not ' '")
        if key != knobs.key:
            shown = f": {key}" if knobs.echo_key_in_errors else ""
            self._fail(ws, "invalid_api_key", f"Invalid API key{shown}")
            return
        if voice not in knobs.voices:
            self._fail(ws, "voice_not_found", f"A voice with voice_id {voice} was not found.")
            return
        config = first.get("generation_config") or {}
        schedule = list(config.get("chunk_length_schedule") or _DEFAULT_SCHEDULE)
        buffer = ""
        generations = 0
        sent = 0
        while True:
            raw = ws.recv()
            message = json.loads(raw)
            with self._lock:
                self.received.append(message)
            text = message.get("text")
            if not isinstance(text, str):
                self.violations.append(f"message without text: {message!r}")
                continue
            if text == "":
                sent = self._generate(ws, buffer, rate, sent)
                if sent < 0:
                    return
                ws.send(json.dumps({"isFinal": True}))
                ws.close(1000)
                return
            buffer += text
            if message.get("flush"):
                cut = len(buffer)
            else:
                threshold = schedule[min(generations, len(schedule) - 1)]
                cut = buffer.rfind(" ") + 1 if len(buffer) >= threshold else 0
            if cut and buffer[:cut].strip():
                sent = self._generate(ws, buffer[:cut], rate, sent)
                if sent < 0:
                    return
                buffer = buffer[cut:]
                generations += 1

    def _generate(self, ws: ServerConnection, text: str, rate: int, sent: int) -> int:
        """Send ``text``'s audio in messages; returns messages sent so far, -1 after a drop."""
        knobs = self.knobs
        if not text.strip():
            return sent
        if knobs.delay:
            time.sleep(knobs.delay)
        step = knobs.chars_per_message
        for offset in range(0, len(text), step):
            piece = text[offset : offset + step]
            if knobs.drop_after_messages is not None and sent >= knobs.drop_after_messages:
                import socket

                ws.socket.shutdown(socket.SHUT_RDWR)
                return -1
            ms = knobs.ms_per_char
            alignment = {
                "chars": list(piece),
                "charStartTimesMs": [round(i * ms) for i in range(len(piece))],
                "charDurationsMs": [round(ms)] * len(piece),
            }
            ws.send(
                json.dumps(
                    {
                        "audio": base64.b64encode(_pcm(len(piece), rate, ms)).decode(),
                        "isFinal": None,
                        "normalizedAlignment": alignment,
                        "alignment": alignment,
                    }
                )
            )
            sent += 1
        return sent

    # -- HTTP ----------------------------------------------------------------------------------

    def _http_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                knobs = fake.knobs
                parts = urlsplit(self.path)
                segments = parts.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                if len(segments) != 4 or segments[3] != "stream":
                    self._json(404, {"detail": "Not Found"})
                    return
                key = self.headers.get("xi-api-key")
                if key != knobs.key:
                    shown = f": {key}" if knobs.echo_key_in_errors else ""
                    self._json(
                        401,
                        {
                            "detail": {
                                "status": "invalid_api_key",
                                "message": f"Invalid API key{shown}",
                            }
                        },
                    )
                    return
                if segments[2] not in knobs.voices:
                    self._json(
                        404,
                        {
                            "detail": {
                                "status": "voice_not_found",
                                "message": f"A voice with voice_id {segments[2]} was not found.",
                            }
                        },
                    )
                    return
                query = parse_qs(parts.query)
                rate = int(query.get("output_format", ["pcm_24000"])[0].removeprefix("pcm_"))
                pcm = _pcm(len(body.get("text", "")), rate, knobs.ms_per_char)
                self.send_response(200)
                self.send_header("Content-Type", "audio/pcm")
                self.send_header("Connection", "close")
                self.end_headers()
                step = 4801  # odd: chunks that split samples
                for offset in range(0, len(pcm), step):
                    self.wfile.write(pcm[offset : offset + step])
                    self.wfile.flush()

        return Handler
