"""The tone-speech codec the fake STT servers recognise: what is said is what is heard."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit.tonespeech import GAP_SECONDS, VOCABULARY, WORD_SECONDS, ToneRecogniser, tone_speech

utterance = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=5).map(" ".join)


@settings(max_examples=25, deadline=None)
@given(
    utterances=st.lists(utterance, min_size=1, max_size=3),
    rate=st.sampled_from([16000, 24000, 8000]),
    chunk=st.integers(min_value=1, max_value=4000),
)
def test_words_round_trip_in_any_chunking(utterances: list[str], rate: int, chunk: int) -> None:
    pcm = tone_speech(utterances, rate, lead=0.2, pause=0.5)
    recogniser = ToneRecogniser(rate)
    heard = []
    step = 2 * chunk
    for i in range(0, len(pcm), step):
        heard += recogniser.feed(pcm[i : i + step])
    heard += recogniser.flush()
    assert [w.word for w in heard] == " ".join(utterances).split()
    first = heard[0]
    assert first.start == pytest.approx(0.2, abs=0.011)
    assert first.end - first.start == pytest.approx(WORD_SECONDS, abs=0.011)
    assert recogniser.time == pytest.approx(len(pcm) / 2 / rate, abs=0.011)


def test_a_word_cut_short_is_still_heard_and_silence_is_not() -> None:
    recogniser = ToneRecogniser(16000)
    assert recogniser.feed(bytes(32000)) == []
    pcm = tone_speech(["hello"], 16000, lead=0, tail=0)
    assert recogniser.feed(pcm[: len(pcm) // 2]) == []
    assert [w.word for w in recogniser.flush()] == ["hello"]
    assert GAP_SECONDS < 0.3  # words of an utterance sit closer than any endpointing


def test_unknown_words_are_refused() -> None:
    with pytest.raises(ValueError, match="'zebra' is not in"):
        tone_speech(["hello zebra"])
