"""The incremental route's two judgements: what text a streaming TTS may be given, and what was
heard.

:class:`TextFeeder` turns LLM deltas into pieces for an :class:`~avatarkit.providers.IncrementalTTS`
as soon as they are safe to speak: whole words of plain text mid-sentence (so first audio can
start before the first full stop), the rest of a sentence once the splitter releases it (markdown
cleaned, exactly as the sentence path would say it), with a flush at each sentence end. Text that
cleanup might still change (markdown, code, a list marker) waits for its sentence to end.

:func:`heard_chars` says how much of the text pushed was heard, from the TTS's word timings and
the audio the renderer actually consumed: the words whose audio ended within it, never more.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from avatarkit.providers import WordTiming
from avatarkit.text import SentenceSplitter, clean_for_speech

__all__ = ["Piece", "TextFeeder", "heard_chars"]

# Mid-sentence text is pushed only when made of these: cleanup leaves such text as it is.
_PLAIN = re.compile(r"[\w ,;:!?.'\"’‘“”\-–—%$€£&/+=@()]*")
_SPACE = re.compile(r"\s+")
_SENTINEL = "qzqzq"


@dataclass(frozen=True, slots=True)
class Piece:
    """Text for the TTS; ``sentence`` is set (to the whole sentence as spoken) at its end."""

    text: str
    sentence: str | None = None


class TextFeeder:
    """Feed LLM deltas, get :class:`Piece` lists to push, in order; see the module docstring."""

    def __init__(self) -> None:
        self._splitter = SentenceSplitter()
        self._raw = ""  # the current sentence as written so far (not yet released)
        self._pushed = ""  # what was pushed of the current sentence, cleaned
        self.text = ""  # everything pushed this turn, joined: what the TTS was asked to say

    def feed(self, delta: str) -> list[Piece]:
        self._raw += delta
        pieces = self._sentences(self._splitter.feed(delta))
        early = self._early()
        if early:
            pieces.append(early)
        return pieces

    def finish(self) -> list[Piece]:
        return self._sentences(self._splitter.flush())

    def _sentences(self, released: list[str]) -> list[Piece]:
        pieces: list[Piece] = []
        for raw in released:
            if self._raw.startswith(raw):
                self._raw = self._raw[len(raw) :]
            else:  # a code fence was dropped: resynchronise on what is left
                self._raw = ""
            speech = clean_for_speech(raw)
            pushed, self._pushed = self._pushed, ""
            if not any(ch.isalnum() for ch in speech):
                continue
            if pushed and _norm(speech).startswith(_norm(pushed)):
                rest = _tail(speech, pushed)
            else:
                rest = speech if not pushed else ""
            text = rest.strip() + " " if rest.strip() else ""
            self.text += text
            pieces.append(Piece(text, sentence=speech))
        return pieces

    def _early(self) -> Piece | None:
        """Whole plain words of the unfinished sentence not pushed yet."""
        cut = max(self._raw.rfind(" "), self._raw.rfind("\n"))
        if cut <= 0:
            return None
        candidate = self._raw[:cut]
        if "```" in candidate or not _PLAIN.fullmatch(candidate.replace("\n", " ")):
            return None
        # Cleaned as part of a longer text (a sentinel word after it), so the edge trimming of
        # a whole sentence (a trailing comma) does not apply to a piece of one.
        clean = clean_for_speech(candidate + " " + _SENTINEL)
        if not clean.endswith(" " + _SENTINEL):
            return None
        clean = clean[: -len(_SENTINEL) - 1]
        # A sentence's trailing commas are trimmed when it ends ("Hello," alone says "Hello"):
        # a piece may not end in one, since nothing after it may come.
        while clean.rstrip().endswith(","):
            space = clean.rstrip().rfind(" ")
            if space <= 0:
                return None
            clean = clean[:space]
        if not _norm(clean).startswith(_norm(self._pushed)):
            return None
        rest = _tail(clean, self._pushed) if self._pushed else clean
        if not any(ch.isalnum() for ch in rest):
            return None
        text = rest.strip() + " "
        self._pushed = clean
        self.text += text
        return Piece(text)


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _tail(text: str, prefix: str) -> str:
    """``text`` after ``prefix``, comparing with whitespace runs made single spaces."""
    target = len(_norm(prefix))
    seen = 0
    i = 0
    stripped = text.lstrip()
    last_space = False
    while i < len(stripped) and seen < target:
        ch = stripped[i]
        if ch.isspace():
            if not last_space:
                seen += 1
            last_space = True
        else:
            seen += 1
            last_space = False
        i += 1
    return stripped[i:].strip()


def heard_chars(text: str, timings: Sequence[WordTiming], seconds: float) -> int:
    """How many characters of ``text`` were heard: up to the end of the last word whose audio
    ended within the first ``seconds`` of the stream (word timings matched to ``text``'s words
    in order). Trailing words without a timing yet count as unheard."""
    heard = 0
    for timing in timings:
        if timing.end > seconds + 1e-6:
            break
        heard += 1
    if heard == 0:
        return 0
    end = 0
    for count, match in enumerate(re.finditer(r"\S+", text), start=1):
        end = match.end()
        if count == heard:
            break
    return end
