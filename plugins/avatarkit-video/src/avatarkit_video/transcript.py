"""The transcript: one timed cue per utterance, written as WebVTT as each utterance ends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from avatarkit.text import spoken_prefix

__all__ = ["Cue", "VttWriter", "spoken_text", "vtt_time"]


@dataclass(frozen=True, slots=True)
class Cue:
    """What was said between ``start`` and ``end`` (seconds of media time)."""

    start: float
    end: float
    text: str
    interrupted: bool = False


def spoken_text(text: str, rendered: int, expected: int) -> str:
    """What an interrupted utterance got to say: the share of its expected samples that was
    rendered, cut at a word boundary the way the session's history cuts it."""
    return spoken_prefix(text, rendered / expected) if expected > 0 else ""


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    ms = round(max(0.0, seconds) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def _escape(text: str) -> str:
    # WebVTT cue text: & and < are markup; a blank line would end the cue; "-->" is reserved.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


class VttWriter:
    """Writes cues to a ``.vtt`` file, flushed after each one so a crash loses none."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: TextIO | None = path.open("w", encoding="utf-8")
        self._file.write("WEBVTT\n\n")
        self._file.flush()

    def write(self, cue: Cue) -> None:
        """Append ``cue``."""
        if self._file is None:
            raise ValueError("transcript is closed")
        self.count += 1
        self._file.write(
            f"{self.count}\n{vtt_time(cue.start)} --> {vtt_time(cue.end)}\n{_escape(cue.text)}\n\n"
        )
        self._file.flush()

    def close(self) -> None:
        """Close (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
