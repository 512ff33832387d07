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
    "UserSpeechEnded",
    "UserSpeechStarted",
    "UserTranscript",
    "VoiceMetrics",
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


@dataclass(frozen=True, slots=True)
class UserSpeechStarted:
    """The user started speaking, ``at`` seconds into the audio given to ``listen``."""

    at: float
    type: Literal["user_speech_start"] = field(default="user_speech_start", init=False)


@dataclass(frozen=True, slots=True)
class UserSpeechEnded:
    """The user stopped speaking, ``at`` seconds into the audio given to ``listen``."""

    at: float
    type: Literal["user_speech_end"] = field(default="user_speech_end", init=False)


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """What the user said so far in this turn: interim (may change) or ``final`` (the message)."""

    text: str
    final: bool
    type: Literal["user_transcript"] = field(default="user_transcript", init=False)


@dataclass(frozen=True, slots=True)
class VoiceMetrics:
    """Voice timings of one spoken turn, in seconds from the end of the user's speech.

    The end of speech is when its last audio frame reached ``listen`` (wall clock), so with a
    live microphone these are the delays the user feels. A figure is ``None`` when it did not
    happen (nothing spoken, the turn was cut).
    """

    turn: int
    to_final_transcript: float | None
    to_first_token: float | None
    to_first_speech: float | None
    type: Literal["voice_metrics"] = field(default="voice_metrics", init=False)


Event: TypeAlias = (
    StateChanged
    | TextDelta
    | SentenceStarted
    | SentenceEnded
    | TurnMetrics
    | ErrorEvent
    | UserSpeechStarted
    | UserSpeechEnded
    | UserTranscript
    | VoiceMetrics
)


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of ``event`` (the exception object of an error is left out)."""
    return {f.name: getattr(event, f.name) for f in fields(event) if f.name != "error"}
