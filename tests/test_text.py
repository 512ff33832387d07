"""The streaming sentence splitter and speech cleanup."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit.text import (
    SentenceSplitter,
    clean_for_speech,
    estimate_speech_seconds,
    split_sentences,
    spoken_prefix,
)

TERMINATORS = ".!?…" + "\"')]}»”’"  # and the closing marks that may follow them


def token_chunks(text: str, cuts: set[int] | None = None) -> list[str]:
    """Cut ``text`` at ``cuts`` (every position when None) the way LLM tokens fall: a chunk may
    end in a full stop (or a quote after one) only where a space or the end follows.
    Tokenizers keep "3.14", "example.com", "..." and "?!" together; this is what lets the
    splitter release "Hello there." without waiting for the next token."""
    chunks: list[str] = []
    start = 0
    for i, ch in enumerate(text[:-1]):
        if (cuts is None or i + 1 in cuts) and not (
            ch in TERMINATORS and not text[i + 1].isspace()
        ):
            chunks.append(text[start : i + 1])
            start = i + 1
    chunks.append(text[start:])
    return chunks


def stream(chunks: list[str]) -> list[str]:
    splitter = SentenceSplitter()
    out: list[str] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    out.extend(splitter.flush())
    return out


def test_an_unambiguous_sentence_is_released_at_its_full_stop() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello") == []
    assert splitter.feed(" there.") == ["Hello there."]  # no need to wait for the next token
    assert splitter.feed(" How are") == []
    assert splitter.feed(" you?") == [" How are you?"]
    assert splitter.feed(" Great!") == [" Great!"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Call Dr. Smith now. Ok.", ["Call Dr. Smith now.", " Ok."]),
        ("It costs 3.50 dollars. Ok.", ["It costs 3.50 dollars.", " Ok."]),
        ("Visit example.com today. Ok.", ["Visit example.com today.", " Ok."]),
        ("Use e.g. this one. Ok.", ["Use e.g. this one.", " Ok."]),
        ("J. R. R. Tolkien wrote it. Ok.", ["J. R. R. Tolkien wrote it.", " Ok."]),
        ("Wait... what? Yes.", ["Wait... what?", " Yes."]),
        ("Really?! Yes.", ["Really?!", " Yes."]),
        ("Apples, pears, etc. Then more.", ["Apples, pears, etc.", " Then more."]),
        ('He said "stop." Then left.', ['He said "stop."', " Then left."]),
        ("Steps:\n1. Mix it.\n2. Bake it.", ["Steps:\n", "1. Mix it.", "\n2. Bake it."]),
    ],
)
def test_ambiguous_full_stops_do_not_cut(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
    assert stream(token_chunks(text)) == expected  # as small as tokens get, the same


def test_a_number_waits_for_the_next_token() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Pi is about 3.") == []  # may become 3.14
    assert splitter.feed("14. Next") == ["Pi is about 3.14."]


def test_code_fences_are_never_cut_or_spoken() -> None:
    text = "Here:\n```python\nx = 1. y = 2.\nprint(x)\n```\nThat is all."
    assert stream(token_chunks(text)) == ["Here:\n", "\nThat is all."]


def test_unterminated_code_fence_is_dropped() -> None:
    assert stream(["Look. ```py\nx = 1."]) == ["Look."]


sentence_text = st.text(
    alphabet=st.sampled_from(list("abcde XYZ.,!?\n3`'\"")), min_size=0, max_size=120
)


@settings(max_examples=300, deadline=None)
@given(text=sentence_text, cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=12))
def test_any_chunking_gives_the_same_sentences(text: str, cuts: list[int]) -> None:
    assert stream(token_chunks(text, set(cuts))) == split_sentences(text)


@settings(max_examples=300, deadline=None)
@given(text=sentence_text.filter(lambda t: "`" not in t))
def test_no_text_is_lost_or_duplicated(text: str) -> None:
    sentences = split_sentences(text)
    assert "".join(sentences).rstrip() == text.rstrip()
    assert all(s.strip() for s in sentences)


@pytest.mark.parametrize(
    ("markdown", "speech"),
    [
        ("**Bold** and *italic* and __under__.", "Bold and italic and under."),
        ("## A heading", "A heading"),
        ("See [the docs](https://example.com/docs).", "See the docs."),
        ("Run `pip install x` now.", "Run pip install x now."),
        ("- first item", "first item"),
        ("1. first step", "first step"),
        ("> quoted words", "quoted words"),
        ("![diagram](d.png) shows it", "diagram shows it"),
        ("a snake_case_name stays", "a snake_case_name stays"),
        ("2 * 3 * 4 is 24", "2 * 3 * 4 is 24"),
    ],
)
def test_clean_for_speech(markdown: str, speech: str) -> None:
    assert clean_for_speech(markdown) == speech


def test_estimates_and_prefixes() -> None:
    assert estimate_speech_seconds("one two three four", words_per_minute=120) == 2.0
    assert spoken_prefix("one two three four", 0.5) == "one two"
    assert spoken_prefix("one two", 1.0) == "one two"
    assert spoken_prefix("one two", 0.0) == ""
