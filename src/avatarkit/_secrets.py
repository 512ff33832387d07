"""The secrets a session keeps out of everything it emits or raises.

Two sources: the values the configuration resolved as secrets (``AvatarSession(secrets=...)``,
which :func:`avatarkit.load_session` fills in), and the keys the providers declare. The rule
for a provider: a ``secrets`` attribute or property (an iterable of ``str`` or pydantic
``SecretStr``), and an ``api_key`` attribute (``str`` or ``SecretStr``), both read afresh each
time, so a token a provider obtains in ``start()`` is covered as soon as it has it.

Streamed text (the LLM's reply, delta by delta) goes through a :class:`StreamRedactor`, since a
secret split across two deltas is in neither: it holds back the shortest tail of the text
that could still become a secret, and nothing else, so text that cannot start a secret is
never delayed. Interim transcripts lose such a tail the same way (:func:`redact_event`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from avatarkit.errors import (
    _SHORT,
    _WORD_CHARS,
    _masked,
    _spans,
    _variants,
    redact,
    redact_exception,
)
from avatarkit.events import ErrorEvent, Event, UserTranscript

__all__ = ["SPOKEN_MASK", "StreamRedactor", "declared_secrets", "redact_event", "redact_spoken"]

#: What stands for a secret in the avatar's reply: in ``TextDelta`` events, in what the
#: renderer or TTS is given to say, and so in history. A word a listener understands (``***``
#: would be read as "asterisk" or dropped by speech cleanup).
SPOKEN_MASK = "[redacted]"

logger = logging.getLogger("avatarkit.session")


def declared_secrets(provider: object) -> list[object]:
    """The keys ``provider`` declares (see the module docstring); never raises."""
    found: list[object] = []
    for attribute in ("secrets", "api_key"):
        try:
            value = getattr(provider, attribute, None)
        except Exception as exc:  # a property that fails must not break error reporting
            logger.debug("reading %s.%s failed: %s", type(provider).__name__, attribute, exc)
            continue
        if value is None or callable(value):
            continue
        if isinstance(value, str | bytes) or hasattr(value, "get_secret_value"):
            found.append(value)
        elif isinstance(value, Iterable):
            found.extend(v for v in value if v is not None)
    return found


def redact_event(event: Event, secrets: Iterable[object]) -> Event:
    """``event`` with every text field (and an error's exception) cleaned of ``secrets``.

    An interim transcript also loses a tail that could be the start of a secret (the user is
    still saying it): the next interim or the final shows it, redacted if it became one.
    """
    values = list(secrets)
    if not values:
        return event
    changes: dict[str, Any] = {}
    if isinstance(event, UserTranscript) and not event.final:
        variants = _variants(values)
        cut = _safe_cut(event.text, variants, "")
        if cut < len(event.text):
            shown, after = event.text[:cut], event.text[cut : cut + 1]
            changes["text"] = _masked(shown, _spans(shown, variants, "", after), "***").rstrip()
    for f in dataclasses.fields(event):
        if not f.init:
            continue
        value = getattr(event, f.name)
        if isinstance(value, str) and f.name not in changes:
            cleaned = redact(value, values)
            if cleaned != value:
                changes[f.name] = cleaned
    if isinstance(event, ErrorEvent) and event.error is not None:
        changes["error"] = redact_exception(event.error, values)
    return dataclasses.replace(event, **changes) if changes else event


def redact_spoken(text: str, secrets: Iterable[object]) -> str:
    """``text`` (whole, nothing to follow) with each secret replaced by :data:`SPOKEN_MASK`."""
    variants = _variants(secrets)
    if not variants:
        return text
    return _masked(text, _spans(text, variants), SPOKEN_MASK)


class StreamRedactor:
    """Redacts a text that arrives in pieces, so that no secret is in the pieces it releases,
    one by one or joined: ``"".join(feed(p) for p in pieces) + flush()`` equals the whole text
    redacted at once (with ``mask``), except that a text ending in 6 or more characters of the
    start of a secret has that end masked as well (see :meth:`flush`).

    It holds back only what might be the start of a secret (any form :func:`~avatarkit.errors.
    redact` knows: as written, URL-encoded): the longest tail of the text so far that is a
    proper prefix of one, or a whole short one that a letter could still extend. A piece with
    no such tail is released whole, at once. ``secrets`` is read at every piece (a provider's
    token may arrive mid-turn).
    """

    def __init__(self, secrets: Callable[[], Iterable[object]], mask: str = SPOKEN_MASK) -> None:
        self._secrets = secrets
        self._mask = mask
        self._held = ""  # raw text not released yet
        self._before = ""  # the last raw character released (a short secret needs a boundary)

    def feed(self, text: str) -> str:
        """Take the next piece; returns what may be shown now (possibly ``""``)."""
        variants = _variants(self._secrets())
        buffer = self._held + text
        if not variants:
            self._held = ""
            self._remember(buffer)
            return buffer
        return self._release(buffer, _safe_cut(buffer, variants, self._before), variants)

    def flush(self) -> str:
        """The text ends (or is cut short): release whatever is held, redacted. A tail that is
        the start of a secret, 6 characters or more of it, is masked too: the text was cut in
        the middle of writing the secret (an interrupt, a failure, the LLM's token limit)."""
        buffer, self._held = self._held, ""
        if not buffer:
            return ""
        variants = _variants(self._secrets())
        if not variants:
            self._remember(buffer)
            return buffer
        spans = _spans(buffer, variants, self._before, "")
        tail = _held_from(buffer, variants, self._before)
        if len(buffer) - tail >= _SHORT:
            start = min([tail, *(a for a, b in spans if b > tail)])
            spans = [(a, b) for a, b in spans if b <= start] + [(start, len(buffer))]
        self._remember(buffer)
        return _masked(buffer, spans, self._mask)

    def _release(self, buffer: str, cut: int, variants: tuple[str, ...]) -> str:
        out, self._held = buffer[:cut], buffer[cut:]
        if not out:
            return ""
        spans = _spans(out, variants, self._before, self._held[:1]) if variants else []
        self._remember(out)
        return _masked(out, spans, self._mask)

    def _remember(self, released: str) -> None:
        if released:
            self._before = released[-1]


def _safe_cut(text: str, variants: tuple[str, ...], before: str) -> int:
    """How much of ``text`` may be released now: up to the tail that might still become a
    secret, and never into the middle of one."""
    cut = _held_from(text, variants, before)
    # nothing held, or all: no secret can straddle the cut
    return _outside_matches(text, variants, cut) if 0 < cut < len(text) else cut


@functools.lru_cache(maxsize=32)
def _shape(variants: tuple[str, ...]) -> tuple[int, frozenset[str]]:
    """The longest variant's length, and the characters a variant can start with."""
    return max(map(len, variants), default=0), frozenset(v[0] for v in variants)


def _held_from(text: str, variants: tuple[str, ...], before: str) -> int:
    """Where the tail of ``text`` that might still become a secret starts (``len(text)``:
    none). A short secret counts only where it could stand alone."""
    longest, firsts = _shape(variants)
    for start in range(max(0, len(text) - longest), len(text)):
        if text[start] not in firsts:
            continue
        tail = text[start:]
        prev = text[start - 1] if start else before[-1:]
        for secret in variants:
            short = len(secret) < _SHORT
            if short and prev in _WORD_CHARS:
                continue  # inside a word: never a short secret
            if secret.startswith(tail) and (len(tail) < len(secret) or short):
                return start
    return len(text)


def _outside_matches(text: str, variants: Sequence[str], cut: int) -> int:
    """``cut`` moved back to the start of any secret in ``text`` that it falls inside, so a
    secret is never released in two parts."""
    moved = True
    while moved:
        moved = False
        for secret in variants:
            # an occurrence found from here that starts before ``cut`` ends after it
            start = text.find(secret, max(0, cut - len(secret) + 1))
            if 0 <= start < cut:
                cut, moved = start, True
    return cut
