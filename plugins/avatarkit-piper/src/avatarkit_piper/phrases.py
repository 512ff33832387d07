"""Cutting a sentence's phonemes into phrases, so long sentences stream and cancel promptly.

Piper's model turns a whole phoneme sequence into audio in one call (VITS is not
autoregressive), so the only way to get the first audio sooner, and to stop sooner when
cancelled, is to synthesise shorter pieces. Clause punctuation (``,`` ``;`` ``:``) is where a
speaker pauses anyway, so cutting there barely changes the prosody; a clause longer than
``max_phonemes`` is cut at the last word boundary before the limit.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CLAUSE_MARKS", "split_phrases"]

CLAUSE_MARKS = frozenset({",", ";", ":"})
MIN_PHONEMES = 12
"""Shorter clauses are joined to the next one (a lone "Well," would sound clipped)."""
MAX_PHONEMES = 200
"""About 3 seconds of speech: the longest piece synthesised in one call."""


def _cut_long(phrase: list[str], max_phonemes: int) -> list[list[str]]:
    pieces: list[list[str]] = []
    while len(phrase) > max_phonemes:
        cut = max((i for i in range(max_phonemes) if phrase[i] == " "), default=-1)
        if cut <= 0:  # one enormous "word": cut anywhere rather than synthesise it whole
            cut = max_phonemes
        pieces.append(phrase[:cut])
        phrase = phrase[cut:]
        while phrase and phrase[0] == " ":
            phrase = phrase[1:]
    if phrase:
        pieces.append(phrase)
    return pieces


def split_phrases(
    phonemes: Sequence[str],
    *,
    min_phonemes: int = MIN_PHONEMES,
    max_phonemes: int = MAX_PHONEMES,
) -> list[list[str]]:
    """Split one sentence's phonemes after clause marks; the pieces concatenate to the input
    minus the spaces at the cuts."""
    clauses: list[list[str]] = []
    current: list[str] = []
    for i, phoneme in enumerate(phonemes):
        if not current and phoneme == " ":
            continue
        current.append(phoneme)
        at_clause_end = phoneme in CLAUSE_MARKS and (
            i + 1 == len(phonemes) or phonemes[i + 1] == " "
        )
        if at_clause_end and len(current) >= min_phonemes:
            clauses.append(current)
            current = []
    if current:
        if clauses and len(current) < min_phonemes // 2:
            clauses[-1].extend([" ", *current])  # a tiny tail joins the previous clause
        else:
            clauses.append(current)
    return [piece for clause in clauses for piece in _cut_long(clause, max_phonemes)]
