"""The JSON messages between the page and the server (documented in docs/guide/serve.md).

Pure functions and dataclasses, no web framework. The page's messages are parsed here into
:data:`ClientMessage` values through one table, :data:`MESSAGE_PARSERS` (message ``type`` →
parser), so a new message type is one parser and one handler in the connection's own table.
Anything malformed becomes a :class:`ProtocolError` carrying a stable ``code`` and a message
written from the page's own input (never from server state), which is sent back to the page; the
page stays connected.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

from avatarkit._version import __version__

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_TEXT_CHARS",
    "MESSAGE_PARSERS",
    "PROTOCOL_VERSION",
    "ClientMessage",
    "ErrorStage",
    "Interrupt",
    "MicStart",
    "MicStop",
    "ParseLimits",
    "Played",
    "ProtocolError",
    "SendText",
    "Start",
    "error_message",
    "hello_message",
    "is_blank",
    "parse_client_message",
]

PROTOCOL_VERSION = 2
#: Larger messages are refused with an error (the connection stays up).
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest user message accepted, in characters.
MAX_TEXT_CHARS = 4000

ErrorStage: TypeAlias = Literal[
    "protocol",
    "busy",
    "rate",
    "limit",
    "config",
    "start",
    "session",
    "origin",
    "auth",
    "shutdown",
    "llm",
    "tts",
    "renderer",
    "timeout",
]


class ProtocolError(ValueError):
    """A message from the page that the server cannot accept; ``str()`` says why.

    ``code`` is stable (pages and tests may rely on it); the text is for people.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Start:
    """The person asked for the avatar (a click in the page): build and start the session.

    Nothing is started on connect alone, so a page that merely loads the app (in a hidden frame,
    say) never starts a paid avatar session.
    """

    #: The credential from the page's link (``#token=...``) when the server requires one.
    token: str | None = field(default=None, repr=False)
    type: ClassVar[str] = "start"


@dataclass(frozen=True, slots=True)
class SendText:
    """The person said ``text``: run a turn (interrupting the avatar if it is speaking)."""

    text: str
    type: ClassVar[str] = "send"


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop the avatar now and drop messages waiting for their turn."""

    type: ClassVar[str] = "interrupt"


@dataclass(frozen=True, slots=True)
class Played:
    """The page finished playing the browser renderer's ``utterance``."""

    utterance: int
    type: ClassVar[str] = "played"


@dataclass(frozen=True, slots=True)
class MicStart:
    """The page's microphone starts: binary messages that follow are its audio, 16-bit
    little-endian mono PCM at ``sample_rate`` (see :mod:`avatarkit.serve.microphone`)."""

    sample_rate: int
    type: ClassVar[str] = "mic_start"


@dataclass(frozen=True, slots=True)
class MicStop:
    """The page's microphone stopped: the audio stream ends."""

    type: ClassVar[str] = "mic_stop"


ClientMessage: TypeAlias = Start | SendText | Interrupt | Played | MicStart | MicStop


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """What a parser may accept."""

    max_bytes: int = MAX_MESSAGE_BYTES
    max_text_chars: int = MAX_TEXT_CHARS


Parser: TypeAlias = Callable[[Mapping[str, Any], ParseLimits], ClientMessage]

# Characters that show nothing: a text made only of these (and whitespace) is not a message.
# Format characters (zero-width space/joiners, BOM, bidi marks) are found by category; these are
# letters and symbols that render blank.
_BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace, control, format (zero-width) or
    blank-rendering characters, or combining marks with nothing to combine with."""
    for char in text:
        if char.isspace() or char in _BLANK_LOOKALIKES:
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"):
            continue
        return False
    return True


def _parse_start(data: Mapping[str, Any], limits: ParseLimits) -> ClientMessage:
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > 1024):
        raise ProtocolError("bad_field", '"start" takes an optional "token" string')
    return Start(token or None)


def _parse_send(data: Mapping[str, Any], limits: ParseLimits) -> ClientMessage:
    text = data.get("text")
    if not isinstance(text, str):
        raise ProtocolError("bad_field", '"send" needs a "text" string')
    text = text.strip()
    if is_blank(text):
        raise ProtocolError("empty_text", '"send" needs a non-empty "text"')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "bad_text", '"send" text is not valid Unicode (it has a lone surrogate)'
        ) from None
    if len(text) > limits.max_text_chars:
        raise ProtocolError(
            "text_too_long",
            f'"send" text has {len(text)} characters; the limit is {limits.max_text_chars}',
        )
    return SendText(text)


def _parse_interrupt(data: Mapping[str, Any], limits: ParseLimits) -> ClientMessage:
    return Interrupt()


def _parse_played(data: Mapping[str, Any], limits: ParseLimits) -> ClientMessage:
    utterance = data.get("utterance")
    if not isinstance(utterance, int) or isinstance(utterance, bool) or utterance < 0:
        raise ProtocolError("bad_field", '"played" needs an "utterance" number')
    return Played(utterance)


def _parse_mic_start(data: Mapping[str, Any], limits: ParseLimits) -> ClientMessage:
    rate = data.get("sample_rate")
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 96000:
        raise ProtocolError("bad_field", '"mic_start" needs a "sample_rate" between 8000 and 96000')
    return MicStart(rate)


def _parse_mic_stop(data: Mapping[str, Any], limits: ParseLimits) -> ClientMessage:
    return MicStop()


#: Message ``type`` → parser. Add a type here and a handler in the connection's table.
MESSAGE_PARSERS: dict[str, Parser] = {
    Start.type: _parse_start,
    SendText.type: _parse_send,
    Interrupt.type: _parse_interrupt,
    Played.type: _parse_played,
    MicStart.type: _parse_mic_start,
    MicStop.type: _parse_mic_stop,
}


def _expected() -> str:
    return ", ".join(f'"{name}"' for name in MESSAGE_PARSERS)


def parse_client_message(
    raw: str | bytes | None,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_text_chars: int = MAX_TEXT_CHARS,
) -> ClientMessage:
    """Parse one WebSocket text message from the page; raises :class:`ProtocolError` only."""
    limits = ParseLimits(max_bytes=max_bytes, max_text_chars=max_text_chars)
    if raw is None:
        raise ProtocolError("empty", "empty message")
    if isinstance(raw, bytes):
        raise ProtocolError(
            "binary",
            "binary messages are not accepted outside a microphone stream (mic_start ... "
            'mic_stop); send JSON text such as {"type": "send", "text": "Hello"}',
        )
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(
            "too_large", f"message of {size} bytes is over the limit of {max_bytes} bytes"
        )
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ProtocolError("too_deep", "message is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError; its text quotes only the page's own input
        raise ProtocolError("bad_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(
            "not_object", f"message must be a JSON object, not {type(data).__name__}"
        )
    kind = data.get("type")
    if kind is None:
        raise ProtocolError("no_type", f'message has no "type"; expected {_expected()}')
    parser = MESSAGE_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError(
            "unknown_type", f"unknown message type {str(kind)[:40]!r}; expected {_expected()}"
        )
    return parser(data, limits)


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


def error_message(
    stage: ErrorStage, message: str, *, code: str | None = None, turn: int | None = None
) -> dict[str, Any]:
    """An error for the page, shaped like the session's ``error`` event plus a stable ``code``.

    ``message`` must be written for the page: no server paths, no exception internals.
    """
    return {
        "type": "error",
        "turn": turn,
        "stage": stage,
        "code": code or stage,
        "message": message,
    }
