from avatarkit_piper.phrases import split_phrases


def phonemes(text: str) -> list[str]:
    return list(text)


def test_cuts_after_clause_marks_and_keeps_every_phoneme() -> None:
    sentence = phonemes(
        "wˈɛl aɪ θˈɪŋk ðˈæt, ˌɔn bˈæləns ðə plˈæn wˈɜːks; haʊˈɛvɚ wiː ʃˌʊd tˈɛst ɪt."
    )
    pieces = split_phrases(sentence)
    assert ["".join(p) for p in pieces] == [
        "wˈɛl aɪ θˈɪŋk ðˈæt,",
        "ˌɔn bˈæləns ðə plˈæn wˈɜːks;",
        "haʊˈɛvɚ wiː ʃˌʊd tˈɛst ɪt.",
    ]


def test_short_clauses_join_the_next_one() -> None:
    pieces = split_phrases(phonemes("wˈɛl, aɪ θˈɪŋk ðˈæt ɪt wˈɜːks."))
    assert ["".join(p) for p in pieces] == ["wˈɛl, aɪ θˈɪŋk ðˈæt ɪt wˈɜːks."]


def test_a_tiny_tail_joins_the_previous_clause() -> None:
    pieces = split_phrases(phonemes("aɪ θˈɪŋk ðˈæt ɪt wˈɜːks, jˈɛs."))
    assert ["".join(p) for p in pieces] == ["aɪ θˈɪŋk ðˈæt ɪt wˈɜːks, jˈɛs."]


def test_a_comma_inside_a_word_is_not_a_cut() -> None:
    pieces = split_phrases(phonemes("ðə nˈʌmbɚ wʌn,θˈaʊzənd ɪz lˈɑːɹdʒ hˈɪɹ."))
    assert len(pieces) == 1


def test_long_clauses_are_cut_at_word_boundaries_under_the_limit() -> None:
    words = ["wˈɜːd"] * 60
    sentence = phonemes(" ".join(words) + ".")
    pieces = split_phrases(sentence, max_phonemes=50)
    assert all(len(p) <= 50 for p in pieces)
    assert len(pieces) > 1
    assert all(p[0] != " " and p[-1] != " " for p in pieces)
    assert " ".join("".join(p) for p in pieces) == "".join(sentence)


def test_one_enormous_word_is_still_bounded() -> None:
    pieces = split_phrases(phonemes("a" * 130), max_phonemes=50)
    assert [len(p) for p in pieces] == [50, 50, 30]


def test_empty_input() -> None:
    assert split_phrases([]) == []
    assert split_phrases([" ", " "]) == []
