"""The history invariant, shared by the tests that cut turns in every way.

History is a prefix of what the renderer consumed, never more: for every sentence the renderer
was given, the words recorded fit inside what it actually said (the fake text renderer's own
record of the share said; the audio the fake audio renderer took from the iterator, against the
fake TTS's exact length per character), and ``SentenceEnded`` says exactly what history says.
"""

from __future__ import annotations

from collections.abc import Sequence

from avatarkit import Message
from avatarkit.events import Event, SentenceEnded, SentenceStarted
from avatarkit.testing import FakeAudioRenderer, FakeTextRenderer


def consumed_chars(
    renderer: FakeTextRenderer | FakeAudioRenderer, ms_per_char: float
) -> list[float]:
    """Characters actually said, per utterance the renderer was given, in order."""
    if isinstance(renderer, FakeTextRenderer):
        return [len(t) * f for t, f in zip(renderer.spoken, renderer.fractions, strict=True)]
    return [u.duration * 1000 / ms_per_char for u in renderer.utterances]


def check_truth(
    history: Sequence[Message],
    events: Sequence[Event],
    renderer: FakeTextRenderer | FakeAudioRenderer,
    *,
    ms_per_char: float = 10.0,
) -> None:
    """Assert the invariant over a whole session (see the module docstring)."""
    started = [e for e in events if isinstance(e, SentenceStarted)]
    ended = [e for e in events if isinstance(e, SentenceEnded)]
    assert [(e.turn, e.index) for e in started] == [(e.turn, e.index) for e in ended]
    consumed = consumed_chars(renderer, ms_per_char)
    # Each sentence begun went to the renderer once, in order.
    assert len(consumed) == len(ended), (len(consumed), ended)
    for event, chars in zip(ended, consumed, strict=True):
        spoken = event.spoken
        assert spoken is not None
        assert event.interrupted == (spoken != event.text), event
        assert event.text.startswith(spoken), event
        rest = event.text[len(spoken) :]
        assert not spoken or not rest or rest[0].isspace(), f"cut inside a word: {event}"
        # Never more than was said (a hair of float tolerance on the audio arithmetic).
        assert len(spoken) <= chars + 1e-6, (event, chars)
    # History's assistant messages are exactly the spoken parts, turn by turn.
    by_turn: dict[int, list[str]] = {}
    for event in ended:
        if event.spoken:
            by_turn.setdefault(event.turn, []).append(event.spoken)
    expected = [" ".join(parts) for _, parts in sorted(by_turn.items())]
    assistant = [m.content for m in history if m.role == "assistant"]
    assert assistant == expected, (assistant, expected)
