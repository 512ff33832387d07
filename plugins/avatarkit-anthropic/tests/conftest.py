"""A fake Anthropic Messages API on 127.0.0.1 speaking the real wire protocol: the message
events (message_start, content_block_start, ping, content_block_delta, content_block_stop,
message_delta, message_stop, error) as SSE, real error bodies, status codes and ``request-id``
headers. The tests drive it through the real ``anthropic`` SDK.

Tests get it as the ``fake_anthropic`` fixture; ``fake_anthropic.script`` lists one behaviour per
request (the last one repeats), built with ``fake_anthropic.reply/error``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from avatarkit.testing import (
    LoopbackServer,
    ReceivedRequest,
    Responder,
    ResponseGate,
    loopback_server,
)

Behaviour = Callable[[Responder], None]


def pytest_configure(config: pytest.Config) -> None:
    # The SDK's SSE reader (and httpx2/httpcore2 below it) is a chain of async generators, and
    # when the stream is left early the inner ones are not closed. Trio's GC hook closes them
    # and also warns (asyncio closes them silently). The HTTP response itself is closed by our
    # code, as the disconnect tests check, so ignore exactly those warnings.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:Async generator '(anthropic|httpx2|httpcore2)\.:ResourceWarning",
    )


class FakeAnthropic:
    """Answers each request with the next scripted behaviour (the last one repeats)."""

    key = "sk-ant-test-0123456789SECRET"

    def __init__(self) -> None:
        self.script: list[Behaviour] = []
        self.server: LoopbackServer

    def __call__(self, r: Responder) -> None:
        # the API takes the key as x-api-key or as a bearer token (this SDK sends the latter)
        headers = r.request.headers
        if self.key not in (headers.get("x-api-key"), headers.get("authorization", "")[7:]):
            self.error(401, "authentication_error", "invalid x-api-key")(r)
            return
        behaviour = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        behaviour(r)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.server.requests

    @staticmethod
    def reply(
        parts: Sequence[str],
        *,
        first_delay: float = 0.0,
        delay: float = 0.0,
        stop_reason: str = "end_turn",
        stop_details: dict[str, Any] | None = None,
        cut_after: int | None = None,
        end_early: bool = False,
        gate: ResponseGate | None = None,
        error_event: dict[str, Any] | None = None,
        thinking: str | None = None,
    ) -> Behaviour:
        """Stream ``parts`` as text deltas. ``cut_after=i`` drops the connection before part
        ``i``; ``end_early`` ends the body cleanly before ``message_stop``."""

        def behaviour(r: Responder) -> None:
            assert r.request.path == "/v1/messages", r.request.path
            body = r.request.json()
            assert body["stream"] is True
            r.start(200, {"content-type": "text/event-stream", "request-id": "req_stream"})
            r.pause(first_delay)
            r.sse(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_test",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": body["model"],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 12, "output_tokens": 1},
                    },
                },
                event="message_start",
            )
            index = 0
            if thinking is not None:
                r.sse(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                    event="content_block_start",
                )
                r.sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "thinking_delta", "thinking": thinking},
                    },
                    event="content_block_delta",
                )
                r.sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
                index = 1
            r.sse(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
                event="content_block_start",
            )
            r.sse({"type": "ping"}, event="ping")
            for i, part in enumerate(parts):
                if i == cut_after:
                    r.cut()
                    return
                if i and delay:
                    r.pause(delay)
                r.sse(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": part},
                    },
                    event="content_block_delta",
                )
                if i == 0 and gate is not None:
                    gate.wait(r)
            if error_event is not None:
                r.sse({"type": "error", "error": error_event}, event="error")
                r.end()
                return
            r.sse({"type": "content_block_stop", "index": index}, event="content_block_stop")
            r.sse(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason,
                        "stop_sequence": None,
                        "stop_details": stop_details,
                    },
                    "usage": {"output_tokens": 15},
                },
                event="message_delta",
            )
            if end_early:
                r.end()
                return
            r.sse({"type": "message_stop"}, event="message_stop")
            r.end()

        return behaviour

    @staticmethod
    def error(
        status: int, type_: str, message: str, headers: dict[str, str] | None = None
    ) -> Behaviour:
        """An error response with the API's JSON error body."""

        def behaviour(r: Responder) -> None:
            body = {
                "type": "error",
                "error": {"type": type_, "message": message},
                "request_id": f"req_{status}",
            }
            r.send(status, body, {"request-id": f"req_{status}", **(headers or {})})

        return behaviour


@pytest.fixture
def gate() -> ResponseGate:
    return ResponseGate()


@pytest.fixture
def fake_anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    for var in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_CUSTOM_HEADERS",
        "ANTHROPIC_PROFILE",
    ):
        monkeypatch.delenv(var, raising=False)
    fake = FakeAnthropic()
    with loopback_server(fake) as server:
        fake.server = server
        yield fake
