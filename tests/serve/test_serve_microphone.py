"""The page's microphone over the serve WebSocket: mic_start, binary PCM16 frames into
``session.listen``, mic_stop; transcripts and barge-in reach the page. Real uvicorn on
127.0.0.1 and the ``websockets`` client; the browser side is in test_serve_mic_browser.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from avatarkit import AvatarSession
from avatarkit.serve import protocol
from avatarkit.serve.microphone import MAX_FRAME_BYTES
from avatarkit.testing import FakeLLM, FakeTextRenderer

ServerThread = Any


def ws_connect(server: ServerThread) -> ClientConnection:
    return connect(server.ws_url, proxy=None, open_timeout=10, max_size=None, max_queue=None)


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], limit: int = 2000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = recv(ws)
        seen.append(message)
        if match(message):
            return message, seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


def ready(ws: ClientConnection) -> dict[str, Any]:
    message, _ = recv_until(ws, lambda m: m["type"] == "ready")
    return message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "mic_start", "sample_rate": 16000}, protocol.MicStart(16000)),
        ({"type": "mic_start", "sample_rate": 48000}, protocol.MicStart(48000)),
        ({"type": "mic_stop"}, protocol.MicStop()),
    ],
)
def test_mic_messages_parse(raw: dict[str, Any], expected: object) -> None:
    assert protocol.parse_client_message(json.dumps(raw)) == expected


@pytest.mark.parametrize("rate", [None, "16000", 16000.0, True, 7999, 96001, -1])
def test_mic_start_needs_a_sane_sample_rate(rate: object) -> None:
    with pytest.raises(protocol.ProtocolError, match='"sample_rate" between 8000 and 96000'):
        protocol.parse_client_message(json.dumps({"type": "mic_start", "sample_rate": rate}))


def test_unknown_types_name_the_mic_messages() -> None:
    with pytest.raises(protocol.ProtocolError, match='"mic_start" or "mic_stop"'):
        protocol.parse_client_message('{"type": "mic"}')


def test_a_session_without_stt_says_it_cannot_listen(serve: Callable[..., ServerThread]) -> None:
    server = serve(lambda: AvatarSession(llm=FakeLLM(["Hi."]), renderer=FakeTextRenderer()))
    with ws_connect(server) as ws:
        assert ready(ws)["listen"] is False
        ws.send(json.dumps({"type": "mic_start", "sample_rate": 16000}))
        error = recv(ws)
        assert (error["type"], error["stage"]) == ("error", "config")
        assert "add an stt: section" in error["message"]
        ws.send(b"\x00\x00" * 320)  # no stream open: binary is refused, the page stays up
        error = recv(ws)
        assert (error["stage"], "not accepted" in error["message"]) == ("protocol", True)
        ws.send(json.dumps({"type": "send", "text": "still there?"}))
        recv_until(ws, lambda m: m["type"] == "metrics")


def test_frame_limit_is_generous_for_20ms_frames() -> None:
    assert MAX_FRAME_BYTES >= 48000 * 2 * 0.02 * 10
