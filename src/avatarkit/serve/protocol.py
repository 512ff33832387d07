"""The JSON messages between the page and the server (documented in docs/guide/serve.md).

Pure functions and dataclasses, no web framework: the page's messages are parsed here into
:data:`ClientMessage` values, and anything malformed becomes a :class:`ProtocolError` whose text
is sent back to the page, which stays connected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from avatarkit._version import __version__

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_TEXT_CHARS",
    "PROTOCOL_VERSION",
    "ClientMessage",
    "Interrupt",
    "MicStart",
    "MicStop",
    "Played",
    "ProtocolError",
    "SendText",
    "error_message",
    "hello_message",
    "parse_client_message",
]

PROTOCOL_VERSION = 1
#: Larger messages are refused with an error (the connection stays up).
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest user message accepted, in characters.
MAX_TEXT_CHARS = 4000

ErrorStage: TypeAlias = Literal["protocol", "busy", "limit", "config", "start", "session", "origin"]


class ProtocolError(ValueError):
    """A message from the page that the server cannot accept; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class SendText:
    """The person said ``text``: run a turn (interrupting the avatar if it is speaking)."""

    text: str


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop the avatar now and drop messages waiting for their turn."""


@dataclass(frozen=True, slots=True)
class Played:
    """The page finished playing the browser renderer's ``utterance``."""

    utterance: int


@dataclass(frozen=True, slots=True)
class MicStart:
    """The page starts sending microphone audio: binary frames of PCM16 at ``sample_rate``."""

    sample_rate: int


@dataclass(frozen=True, slots=True)
class MicStop:
    """The page stopped its microphone."""


ClientMessage: TypeAlias = SendText | Interrupt | Played | MicStart | MicStop

_EXPECTED = 'expected "send", "interrupt", "played", "mic_start" or "mic_stop"'


def parse_client_message(
    raw: str | bytes | None,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_text_chars: int = MAX_TEXT_CHARS,
) -> ClientMessage:
    """Parse one WebSocket message from the page; raises :class:`ProtocolError`."""
    if raw is None:
        raise ProtocolError("empty message")
    if isinstance(raw, bytes):
        raise ProtocolError(
            "binary messages are not accepted outside a microphone stream (mic_start ... "
            'mic_stop); send JSON text such as {"type": "send", "text": "Hello"}'
        )
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(f"message of {size} bytes is over the limit of {max_bytes} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be a JSON object, not {type(data).__name__}")
    kind = data.get("type")
    if kind == "send":
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError('"send" needs a "text" string')
        text = text.strip()
        if not text:
            raise ProtocolError('"send" needs a non-empty "text"')
        if len(text) > max_text_chars:
            raise ProtocolError(
                f'"send" text has {len(text)} characters; the limit is {max_text_chars}'
            )
        return SendText(text)
    if kind == "interrupt":
        return Interrupt()
    if kind == "played":
        utterance = data.get("utterance")
        if not isinstance(utterance, int) or isinstance(utterance, bool) or utterance < 0:
            raise ProtocolError('"played" needs an "utterance" number')
        return Played(utterance)
    if kind == "mic_start":
        rate = data.get("sample_rate")
        if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 96000:
            raise ProtocolError('"mic_start" needs a "sample_rate" between 8000 and 96000')
        return MicStart(rate)
    if kind == "mic_stop":
        return MicStop()
    if kind is None:
        raise ProtocolError(f'message has no "type"; {_EXPECTED}')
    raise ProtocolError(f"unknown message type {str(kind)[:40]!r}; {_EXPECTED}")


def hello_message(*, max_bytes: int, max_text_chars: int, max_pending: int) -> dict[str, Any]:
    """The first message of every connection."""
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "version": __version__,
        "limits": {
            "max_message_bytes": max_bytes,
            "max_text_chars": max_text_chars,
            "max_pending": max_pending,
        },
    }


def error_message(stage: ErrorStage, message: str) -> dict[str, Any]:
    """A server-side error, shaped like the session's ``error`` event (``turn`` is null)."""
    return {"type": "error", "turn": None, "stage": stage, "message": message}
