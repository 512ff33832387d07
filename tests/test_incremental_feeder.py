"""What the incremental route gives a streaming TTS, and what it counts as heard."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit.incremental import TextFeeder, heard_chars
from avatarkit.providers import WordTiming
from avatarkit.testing import tokens
from avatarkit.text import clean_for_speech, split_sentences


def feed_all(chunks: list[str]) -> tuple[TextFeeder, list[str], list[str]]:
    feeder = TextFeeder()
    pushed: list[str] = []
    sentences: list[str] = []
    for chunk in chunks:
        for piece in feeder.feed(chunk):
            pushed.append(piece.text)
            if piece.sentence is not None:
                sentences.append(piece.sentence)
    for piece in feeder.finish():
        pushed.append(piece.text)
        if piece.sentence is not None:
            sentences.append(piece.sentence)
    return feeder, pushed, sentences


def sentence_path(text: str) -> list[str]:
    spoken = [clean_for_speech(s) for s in split_sentences(text)]
    return [s for s in spoken if any(ch.isalnum() for ch in s)]


def test_words_go_out_before_the_sentence_ends() -> None:
    feeder = TextFeeder()
    assert feeder.feed("Well, I") == []  # "I" may go on, and the comma waits for a next word
    assert [p.text for p in feeder.feed(" think the")] == ["Well, I think "]
    assert feeder.feed("") == []
    pieces = feeder.feed(" answer is yes. And")
    assert pieces[-1].sentence == "Well, I think the answer is yes."
    assert feeder.text.split() == "Well, I think the answer is yes.".split()


def test_markdown_waits_for_the_sentence_end() -> None:
    feeder = TextFeeder()
    assert feeder.feed("This is **very ") == []
    assert feeder.feed("important** to ") == []
    pieces = feeder.feed("know. ")
    assert [p.text for p in pieces] == ["This is very important to know. "]


def test_a_piece_never_ends_in_a_comma_the_sentence_would_drop() -> None:
    # found by the property test below: "Hello , ," says "Hello" on the sentence path
    _, pushed, sentences = feed_all(["Hello , ", ", "])
    assert sentences == ["Hello"]
    assert "".join(pushed).split() == ["Hello"]
    _, pushed, _ = feed_all(["Well, ", "I ", "think so."])
    assert "".join(pushed).split() == ["Well,", "I", "think", "so."]


def test_every_piece_ends_at_a_space() -> None:
    _, pushed, _ = feed_all(tokens("One two three. Four five six? Seven eight nine!"))
    assert all(piece.endswith(" ") and not piece.startswith(" ") for piece in pushed)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Hello",
                "there",
                "friend",
                "**bold**",
                "`code`",
                "3.5",
                "Dr.",
                "e.g.",
                "[link](u)",
                "#",
                "-",
                "1.",
                "!",
                "?",
                ".",
                ",",
                "\n",
                "\n\n",
                " ",
                "“quoted”",
                "x < 5",
                "…",
            ]
        ),
        max_size=40,
    ),
    st.randoms(use_true_random=False),
)
def test_pushed_text_is_what_the_sentence_path_would_say(words: list[str], rnd) -> None:
    text = " ".join(words)
    cuts = sorted(rnd.sample(range(len(text) + 1), k=min(len(text), rnd.randint(0, 12))))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    feeder, pushed, sentences = feed_all(chunks)
    expected = sentence_path(text)
    assert sentences == expected
    assert "".join(pushed).split() == " ".join(expected).split()
    assert feeder.text == "".join(pushed)


def test_heard_chars_counts_whole_words_within_the_audio() -> None:
    text = "Hello there, my friend. "
    timings = [
        WordTiming("Hello", 0.0, 0.3),
        WordTiming("there,", 0.3, 0.6),
        WordTiming("my", 0.6, 0.8),
        WordTiming("friend.", 0.8, 1.2),
    ]
    assert heard_chars(text, timings, 0.0) == 0
    assert heard_chars(text, timings, 0.29) == 0
    assert text[: heard_chars(text, timings, 0.3)] == "Hello"
    assert text[: heard_chars(text, timings, 0.79)] == "Hello there,"
    assert text[: heard_chars(text, timings, 5.0)] == "Hello there, my friend."
    # timings that have not arrived yet never count as heard
    assert text[: heard_chars(text, timings[:2], 5.0)] == "Hello there,"


async def test_fake_incremental_tts_passes_the_conformance_check() -> None:
    from avatarkit.testing import FakeIncrementalTTS, check_incremental_tts

    tts = FakeIncrementalTTS()
    items = await check_incremental_tts(tts)
    assert any(isinstance(i, WordTiming) for i in items)
    assert tts.streams[0].completed
    assert tts.streams[1].cancelled
    await check_incremental_tts(FakeIncrementalTTS(timings=False))
