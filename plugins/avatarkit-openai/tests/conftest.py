"""A fake OpenAI on 127.0.0.1 speaking the real wire protocol: chat-completion chunks as SSE
(ending in ``data: [DONE]``), the speech endpoint's streamed PCM, real error bodies, status codes
and ``x-request-id`` headers. The tests drive it through the real ``openai`` SDK.

Tests get it as the ``fake_openai`` fixture; ``fake_openai.script`` lists one behaviour per
request (the last one repeats), built with ``fake_openai.chat/error/speech``.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import wave
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from avatarkit.testing import (
    LoopbackServer,
    ReceivedRequest,
    Responder,
    ResponseGate,
    loopback_server,
    tone,
)
from avatarkit.tonespeech import ToneRecogniser

Behaviour = Callable[[Responder], None]


def multipart(request: ReceivedRequest) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body (files by field name, their bytes)."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary="), content_type
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        fields[name] = payload
    return fields


def recognise_wav(data: bytes) -> str:
    """The tone-speech words in a 16-bit mono WAV file."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2), "16-bit mono WAV expected"
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    recogniser = ToneRecogniser(rate)
    words = recogniser.feed(pcm) + recogniser.flush()
    return " ".join(w.word for w in words)


def pytest_configure(config: pytest.Config) -> None:
    # The SDK's SSE reader (and httpx2/httpcore2 below it) is a chain of async generators, and
    # it stops at ``data: [DONE]`` (or when we stop early) without closing the inner ones.
    # Trio's GC hook closes them and also warns (asyncio closes them silently). The HTTP
    # response itself is closed by our code, as the disconnect tests check, so ignore exactly
    # those warnings about those packages' generators.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:Async generator '(openai|httpx2|httpcore2)\.:ResourceWarning",
    )


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as the API sends it."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "test-model",
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


class FakeOpenAI:
    """Answers each request with the next scripted behaviour (the last one repeats)."""

    key = "sk-test-0123456789abcdefSECRET"

    def __init__(self) -> None:
        self.script: list[Behaviour] = []
        self.server: LoopbackServer

    def __call__(self, r: Responder) -> None:
        if r.request.headers.get("authorization") != f"Bearer {self.key}":
            self.error(
                401,
                "Incorrect API key provided: sk-wron*****1234. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )(r)
            return
        behaviour = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        behaviour(r)

    @property
    def url(self) -> str:
        return self.server.url + "/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.server.requests

    @staticmethod
    def chat(
        parts: Sequence[str],
        *,
        first_delay: float = 0.0,
        headers_delay: float = 0.0,
        delay: float = 0.0,
        finish: str | None = "stop",
        cut_after: int | None = None,
        end_early: bool = False,
        gate: ResponseGate | None = None,
        refusal: str | None = None,
        mid_stream_error: dict[str, Any] | None = None,
    ) -> Behaviour:
        """Stream ``parts`` as chunks. ``cut_after=i`` drops the connection before part ``i``;
        ``end_early`` ends the body cleanly but with no finish_reason and no ``[DONE]``."""

        def behaviour(r: Responder) -> None:
            assert r.request.path == "/v1/chat/completions", r.request.path
            assert r.request.json()["stream"] is True
            r.pause(headers_delay)
            r.start(200, {"content-type": "text/event-stream", "x-request-id": "req_chat"})
            r.pause(first_delay)
            r.sse(chunk("", role="assistant"))
            for i, part in enumerate(parts):
                if i == cut_after:
                    r.cut()
                    return
                if i and delay:
                    r.pause(delay)
                r.sse(chunk(part))
                if i == 0 and gate is not None:
                    gate.wait(r)
            if mid_stream_error is not None:
                r.sse({"error": mid_stream_error})
                r.end()
                return
            if refusal is not None:
                r.sse(chunk(refusal=refusal))
            if end_early:
                r.end()
                return
            r.sse(chunk(finish=finish))
            r.sse("[DONE]")
            r.end()

        return behaviour

    @staticmethod
    def error(
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Behaviour:
        """An error response with the API's JSON error body."""

        def behaviour(r: Responder) -> None:
            body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
            r.send(status, body, {"x-request-id": f"req_{status}", **(headers or {})})

        return behaviour

    @staticmethod
    def transcription(
        *,
        stream: bool | None = None,
        cut_after: int | None = None,
        gate: ResponseGate | None = None,
    ) -> Behaviour:
        """``POST /v1/audio/transcriptions``: parse the multipart form, recognise the WAV's tone
        speech (avatarkit.tonespeech) and answer JSON, or SSE deltas when the form says
        ``stream=true``. ``cut_after=i`` drops the connection before delta ``i``."""

        def behaviour(r: Responder) -> None:
            assert r.request.path == "/v1/audio/transcriptions", r.request.path
            form = multipart(r.request)
            assert form["response_format"] == b"json"
            text = recognise_wav(form["file"])
            streaming = form.get("stream") == b"true"
            assert stream is None or streaming == stream
            if not streaming:
                r.send(200, {"text": text, "usage": {"type": "duration", "seconds": 1}})
                return
            r.start(200, {"content-type": "text/event-stream", "x-request-id": "req_stt"})
            for i, word in enumerate(text.split()):
                if i == cut_after:
                    r.cut()
                    return
                r.sse({"type": "transcript.text.delta", "delta": word if i == 0 else " " + word})
                if i == 0 and gate is not None:
                    gate.wait(r)
            r.sse({"type": "transcript.text.done", "text": text})
            r.end()

        return behaviour

    @staticmethod
    def router(chat: Behaviour, speech: Behaviour) -> Behaviour:
        """Chat and speech requests answered by their own behaviour (for whole sessions)."""

        def behaviour(r: Responder) -> None:
            (speech if r.request.path.endswith("/audio/speech") else chat)(r)

        return behaviour

    @staticmethod
    def speech(
        pcm: bytes | None = None,
        *,
        piece: int = 4801,
        delay: float = 0.0,
        gate: ResponseGate | None = None,
        cut_after: int | None = None,
    ) -> Behaviour:
        """Stream ``pcm`` in pieces of ``piece`` bytes (odd by default, as TCP may split); with
        no ``pcm``, 10 ms of 24 kHz tone per character of the input."""

        def behaviour(r: Responder) -> None:
            assert r.request.path == "/v1/audio/speech", r.request.path
            assert r.request.headers["accept"] == "application/octet-stream"
            audio = pcm if pcm is not None else tone(len(r.request.json()["input"]) / 100, 24000)
            r.start(200, {"content-type": "application/octet-stream", "x-request-id": "req_tts"})
            for n, i in enumerate(range(0, len(audio), piece)):
                if n == cut_after:
                    r.cut()
                    return
                if i and delay:
                    r.pause(delay)
                r.write(audio[i : i + piece])
                if i == 0 and gate is not None:
                    gate.wait(r)
            r.end()

        return behaviour


@pytest.fixture
def gate() -> ResponseGate:
    return ResponseGate()


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeOpenAI()
    with loopback_server(fake) as server:
        fake.server = server
        yield fake
