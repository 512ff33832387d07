"""The streaming sentence splitter and speech cleanup."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit.text import (
    MAX_SENTENCE_CHARS,
    MAX_UNSPACED_CHARS,
    SentenceSplitter,
    clean_for_speech,
    estimate_speech_seconds,
    split_sentences,
    spoken_prefix,
)

TERMINATORS = ".!?…．" + "\"')]}»”’" + "」』）】〕〉》〙〛＂＇］｝"  # and the marks that may follow
CJK_TERMINATORS = "。！？｡"


def token_chunks(text: str, cuts: set[int] | None = None) -> list[str]:
    """Cut ``text`` at ``cuts`` (every position when None) the way LLM tokens fall: a chunk may
    end in a full stop (or a quote after one) only where a space or the end follows.
    Tokenizers keep "3.14", "example.com", "..." and "?!" together; this is what lets the
    splitter release "Hello there." without waiting for the next token."""
    chunks: list[str] = []
    start = 0
    for i, ch in enumerate(text[:-1]):
        nxt = text[i + 1]
        if (cuts is None or i + 1 in cuts) and not (
            (ch in TERMINATORS and not nxt.isspace())
            # Chinese and Japanese: no space follows 。, but a closing mark stays with it
            or (ch in CJK_TERMINATORS and (nxt in TERMINATORS or nxt in CJK_TERMINATORS))
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


sentence_text = st.one_of(
    st.text(alphabet=st.sampled_from(list("abcde XYZ.,!?\n3`'\"")), min_size=0, max_size=120),
    # CJK punctuation, fullwidth stops between digits, closing quotes
    st.text(alphabet=st.sampled_from(list("你好我是３3 。！？．，、「」a")), max_size=120),
    # long runs with few or no sentence ends: the length cut
    st.text(alphabet=st.sampled_from(list("abc  ,;:—、你。`")), min_size=150, max_size=700),
    st.text(alphabet=st.sampled_from(list("abcdefgh 。")), min_size=150, max_size=700),
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
    for sentence in sentences:  # nothing waits for more than the documented length
        assert len(sentence.strip()) <= MAX_SENTENCE_CHARS + 2, sentence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好。我很好！你呢？", ["你好。", "我很好！", "你呢？"]),
        ("他说：「好的。」然后走了。", ["他说：「好的。」", "然后走了。"]),
        ("こんにちは。元気ですか？", ["こんにちは。", "元気ですか？"]),
        ("円周率は３．１４です。次", ["円周率は３．１４です。", "次"]),
        ("ＯＫ．Ｎｅｘｔ", ["ＯＫ．", "Ｎｅｘｔ"]),
        ("Hi there。Next one", ["Hi there。", "Next one"]),
    ],
)
def test_cjk_and_fullwidth_punctuation_ends_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
    assert stream(token_chunks(text)) == expected


def test_a_cjk_sentence_is_released_at_its_full_stop() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("你好") == []
    assert splitter.feed("。") == ["你好。"]  # no space will follow: no need to wait
    assert splitter.feed("我很") == []
    assert splitter.feed("好！你") == ["我很好！"]


def test_an_unpunctuated_reply_is_cut_at_a_clause_or_word_boundary() -> None:
    words = "and then we walk along the river for a while, talking about nothing much "
    reply = words * 20  # 1,460 characters and not one sentence end
    splitter = SentenceSplitter()
    released: list[tuple[int, str]] = []
    fed = 0
    for token in token_chunks(reply, set(range(0, len(reply), 4))):
        fed += len(token)
        released.extend((fed, s) for s in splitter.feed(token))
    released.extend((fed, s) for s in splitter.flush())
    first_at, first = released[0]
    assert first_at <= MAX_SENTENCE_CHARS + 4  # first speech did not wait for the whole reply
    assert first.endswith("a while,")  # the last clause mark in the first 200 characters
    assert "".join(s for _, s in released) == reply
    for _, sentence in released:
        assert len(sentence.strip()) <= MAX_SENTENCE_CHARS
        assert sentence.strip().split()[0] in words.split()  # never cut inside a word
        assert not sentence.endswith(("alon", "whil"))


def test_text_without_spaces_is_cut_at_a_character_bound() -> None:
    reply = "这是一个没有任何标点符号的非常长的回答" * 20
    sentences = stream(token_chunks(reply, set(range(0, len(reply), 3))))
    assert "".join(sentences) == reply
    assert [len(s) for s in sentences] == [MAX_UNSPACED_CHARS] * (len(reply) // 80) + (
        [len(reply) % 80] if len(reply) % 80 else []
    )
    with_commas = ("这是一个很长的子句，" * 20)[:-1] + "。"
    first = split_sentences(with_commas)[0]
    assert first.endswith("，")
    assert MAX_UNSPACED_CHARS // 2 < len(first) <= MAX_UNSPACED_CHARS


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
        # < and > that are not tags keep every word
        ("If x < 5 and y > 3 it works.", "If x < 5 and y > 3 it works."),
        ("Use a Vec<String> here.", "Use a Vec<String> here."),
        ("Array<Object> and Map<K, V>", "Array<Object> and Map<K, V>"),
        ("so a<b and b>c holds", "so a<b and b>c holds"),
        ("a<b", "a<b"),
        ("a<b>c", "a<b>c"),
        ("x<y and y>z", "x<y and y>z"),
        # real HTML tags are not spoken
        ("<b>Bold</b> and <em>this</em>.", "Bold and this."),
        ("One<br>two<br/>three", "One two three"),
        ("<p>First.</p><p>Second.</p>", "First. Second."),
        ('<a href="https://x.y/z">the docs</a> say', "the docs say"),
        ("<!-- a comment -->Shown", "Shown"),
        ("<p>Half of a paragraph.", "Half of a paragraph."),
        ("Its other half.</p>", "Its other half."),
        ("if x <b and y> z", "if x <b and y> z"),
        ("Use the `<br>` tag, or `<b>`bold`</b>`.", "Use the <br> tag, or <b>bold</b>."),
        ('<span class="hl">Hi</span> there', "Hi there"),
    ],
)
def test_clean_for_speech(markdown: str, speech: str) -> None:
    assert clean_for_speech(markdown) == speech


def test_estimates_and_prefixes() -> None:
    assert estimate_speech_seconds("one two three four", words_per_minute=120) == 2.0
    assert spoken_prefix("one two three four", 0.5) == "one two"
    assert spoken_prefix("one two", 1.0) == "one two"
    assert spoken_prefix("one two", 0.0) == ""


# Words and the characters of comparisons and generics, but never a real HTML element's name.
no_tag_text = st.text(alphabet=st.sampled_from(list("xyzXYZ019 <>/=\"',!?-")), max_size=80)


@settings(max_examples=300, deadline=None)
@given(text=no_tag_text)
def test_clean_for_speech_never_removes_a_word(text: str) -> None:
    import re

    def words(t: str) -> list[str]:
        return re.findall(r"[A-Za-z0-9]+", t)

    assert words(clean_for_speech(text)) == words(text)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from(["", "b", "em", "strong", "span", "p", "div", "i"]),
            st.text(alphabet="xyz <>", min_size=1, max_size=8).filter(lambda t: t.strip()),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_html_tags_around_words_are_removed_and_the_words_kept(
    parts: list[tuple[str, str]],
) -> None:
    import re

    text = " ".join(f"<{tag}>{words}</{tag}>" if tag else words for tag, words in parts)
    expected = " ".join(words for _, words in parts)
    assert re.findall(r"[a-z]+", clean_for_speech(text)) == re.findall(r"[a-z]+", expected)
    assert "<b>" not in clean_for_speech(text)
    assert "</em>" not in clean_for_speech(text)


@given(
    st.text(
        alphabet=st.sampled_from(list("ab c1.2)-+*_~`!#[]()>|\u2022\n\t\r<>/=\"' xyz")), max_size=16
    )
)
def test_plain_sentences_skip_the_markdown_patterns_with_the_same_result(text: str) -> None:
    from avatarkit import text as module

    def every_pattern(value: str) -> str:
        value = module._strip_html(value)
        for pattern, replacement in module._MD_PATTERNS:
            value = pattern.sub(replacement, value)
        return value.strip(" ,")

    assert clean_for_speech(text) == every_pattern(text)
