"""What of a sentence was actually said: the accounting behind history and ``SentenceEnded``.

A sentence counts as said in full only when the renderer returned from speaking it on its own,
nobody interrupted it, and (audio route) the renderer took all of its audio. Every other ending
(interrupt, the caller's cancellation, a provider failure, a timeout) is measured:

* **audio**: seconds of audio the renderer pulled from the session's iterator, over the
  sentence's full audio once the TTS finished it; while the TTS was still producing the
  sentence, over the larger of what was synthesised and an estimate of its full length (the
  slowest seconds-per-character this TTS has shown in the session, plus a quarter; before any
  sentence was complete, the generous :func:`speech_seconds_bound`);
* **text**: the renderer's own report (:class:`avatarkit.providers.ReportsProgress`), else the
  time spent speaking over a generous estimate of how long the sentence takes to say.

The words recorded are the whole words inside that fraction of the sentence's characters, so the
record errs short, never long.
"""

from __future__ import annotations

import math
import time
import unicodedata
from dataclasses import dataclass, field

__all__ = ["AudioRate", "Meter", "speech_seconds_bound", "spoken_prefix"]

# Seconds per character: slower than people and TTS voices speak, so the bound holds for
# practically any voice (English is said at about 14 characters a second, Mandarin 4-5
# characters, Japanese 7-8 kana).
_PER_LETTER = 0.1
_PER_CJK = 0.3
_PER_SYMBOL = 0.2  # "slash", "dot", "at"...
_PER_SPELLED = 0.25  # a long token with no spaces (URL, hash, code) is read out in pieces
_LONG_TOKEN = 16
_BASE = 0.5


def _is_cjk(ch: str) -> bool:
    """Ideographs, kana and hangul: scripts written without spaces, about a syllable each."""
    if ch < "\u2e80":
        return False
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPHIC", "HALFWIDTH"))


def speech_seconds_bound(text: str) -> float:
    """A generous upper bound on how long ``text`` takes to say aloud.

    Character-aware (CJK, long URLs), unlike a word count: it bounds the ``speak`` timeout of
    the text route and turns elapsed time into a spoken fraction that errs short.
    """
    seconds = _BASE
    for token in text.split():
        if len(token) >= _LONG_TOKEN and not any(_is_cjk(c) for c in token):
            seconds += len(token) * _PER_SPELLED
            continue
        for ch in token:
            if _is_cjk(ch):
                seconds += _PER_CJK
            elif ch.isalnum():
                seconds += _PER_LETTER
            else:
                seconds += _PER_SYMBOL
    return seconds


def _can_cut_at(text: str, end: int) -> bool:
    """Whether ``text[:end]`` ends at a word boundary (a space, or between CJK characters)."""
    if end <= 0 or end >= len(text):
        return True
    return text[end].isspace() or text[end - 1].isspace() or _is_cjk(text[end - 1])


def spoken_prefix(text: str, fraction: float) -> str:
    """The whole words of ``text`` that fit in its first ``fraction`` of characters."""
    if fraction >= 1:
        return text
    if fraction <= 0 or math.isnan(fraction):
        return ""
    end = int(len(text) * fraction)
    while end > 0 and not _can_cut_at(text, end):
        end -= 1
    return text[:end].strip()


@dataclass
class Meter:
    """Measures one sentence while the renderer speaks it (see the module docstring)."""

    text: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    delivered: float = 0.0  # audio seconds the renderer pulled
    synthesized: float = 0.0  # audio seconds the TTS produced so far
    total: float | None = None  # the sentence's full audio, once the TTS finished it
    expected: float | None = None  # audio: estimated full audio while the TTS is unfinished
    exhausted: bool = False  # audio: the renderer read the audio to its end
    returned: bool = False  # speak/speak_text returned on its own
    timed_out: bool = False

    def fraction(self, *, interrupted: bool, report: float | None) -> float:
        """The share of the sentence said, 0 to 1."""
        if report is not None:
            report = min(max(float(report), 0.0), 1.0)
            if math.isnan(report):
                report = None
        if self.route == "audio":
            if self.exhausted and self.total is not None and self.total > 0:
                measured = 1.0  # every chunk was taken (resampling may round the seconds)
            elif self.total is not None:
                measured = self.delivered / self.total if self.total > 0 else 0.0
            else:
                expected = self.expected or speech_seconds_bound(self.text)
                measured = self.delivered / max(self.synthesized, expected)
            return min(measured, 1.0)
        if report is not None:
            return report
        if self.returned and not interrupted:
            return 1.0
        if self.timed_out:
            return 0.0  # it neither finished nor said how far it got: claim nothing
        elapsed = time.perf_counter() - self.started
        return min(elapsed / speech_seconds_bound(self.text), 1.0)


class AudioRate:
    """The slowest audio seconds per character a TTS has produced in this session: the estimate
    of a sentence's full length while its synthesis is unfinished."""

    MARGIN = 1.25

    def __init__(self) -> None:
        self.per_char: float | None = None

    def learn(self, text: str, seconds: float) -> None:
        if text and seconds > 0:
            rate = seconds / len(text)
            self.per_char = rate if self.per_char is None else max(self.per_char, rate)

    def expected(self, text: str) -> float | None:
        return None if self.per_char is None else len(text) * self.per_char * self.MARGIN
