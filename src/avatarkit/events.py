"""What a session tells the outside world while it runs.

Every event is a small frozen dataclass with a ``type`` string, so it can be matched in Python
(``match event: case SentenceStarted(text=t): ...``) or sent as JSON with :func:`event_to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeAlias

__all__ = [
    "ErrorEvent",
    "Event",
    "SentenceEnded",
    "SentenceStarted",
    "State",
    "StateChanged",
    "TextDelta",
    "TurnMetrics",
    "event_to_dict",
]

State = Literal["idle", "thinking", "speaking", "closed"]


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The session moved to ``state``."""

    state: State
    type: Literal["state"] = field(default="state", init=False)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the LLM's reply as it streams in (before speech cleanup)."""

    turn: int
    text: str
    type: Literal["delta"] = field(default="delta", init=False)


@dataclass(frozen=True, slots=True)
class SentenceStarted:
    """The renderer starts speaking sentence ``index`` of turn ``turn``."""

    turn: int
    index: int
    text: str
    type: Literal["sentence_start"] = field(default="sentence_start", init=False)


@dataclass(frozen=True, slots=True)
class SentenceEnded:
    """Sentence ``index`` finished, or was cut short when ``interrupted``.

    ``spoken`` is what of ``text`` was actually said, exactly what history records for it: all
    of ``text`` when not ``interrupted``, else a whole-word prefix (possibly empty).
    """

    turn: int
    index: int
    text: str
    interrupted: bool = False
    spoken: str | None = None
    type: Literal["sentence_end"] = field(default="sentence_end", init=False)


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    """Timings of one turn, in seconds from the call to ``send``/``say``.

    ``time_to_first_token`` is ``None`` for ``say`` (no LLM) and when the LLM produced nothing;
    ``time_to_first_speech`` is ``None`` when nothing was spoken.
    """

    turn: int
    time_to_first_token: float | None
    time_to_first_speech: float | None
    duration: float
    sentences: int
    interrupted: bool
    type: Literal["metrics"] = field(default="metrics", init=False)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A turn failed at ``stage`` (``llm``, ``tts``, ``renderer``; a timeout is reported at the
    stage that took too long); the session is still usable. ``message`` and ``error`` are
    cleaned of the session's secrets."""

    turn: int
    stage: str
    message: str
    error: BaseException | None = field(default=None, compare=False, repr=False)
    type: Literal["error"] = field(default="error", init=False)


Event: TypeAlias = (
    StateChanged | TextDelta | SentenceStarted | SentenceEnded | TurnMetrics | ErrorEvent
)


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of ``event`` (the exception object of an error is left out)."""
    return {f.name: getattr(event, f.name) for f in fields(event) if f.name != "error"}
