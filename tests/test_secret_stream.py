"""A secret the LLM streams is never seen or heard, however its deltas cut it (asyncio and trio).

The reply reaches the outside in pieces: ``TextDelta`` events (the CLI prints them, ``serve``
sends them to the page), and the text the renderer or TTS says. A secret split across two
deltas is in neither piece, so each is checked against what came before: only a tail that
could still become a secret waits for the next delta; everything else is shown at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import traceback
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarkit import AudioChunk, AvatarSession, Message, ProviderError
from avatarkit._secrets import SPOKEN_MASK, StreamRedactor, redact_spoken
from avatarkit.errors import redact
from avatarkit.events import (
    ErrorEvent,
    Event,
    SentenceEnded,
    TextDelta,
    TurnMetrics,
    UserTranscript,
    event_to_dict,
)
from avatarkit.testing import (
    FakeAudioRenderer,
    FakeIncrementalTTS,
    FakeSTT,
    FakeTextRenderer,
    FakeTTS,
    FakeVAD,
    tone,
    wait_until,
)

KEY = "sk-live-7f3a/9Q+zz=="  # its URL-encoded forms differ from it


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` the redactor knows."""
    return {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}


def leaks(text: str, secret: str) -> bool:
    return any(form in text for form in forms(secret))


def could_start(text: str, secret: str) -> bool:
    """Some tail of ``text`` is a proper prefix of a form of ``secret`` (brute force)."""
    return any(
        form.startswith(text[i:]) and len(text) - i < len(form)
        for form in forms(secret)
        for i in range(len(text))
    )


def start_cut_at_end(text: str, secret: str) -> int:
    """Where the longest tail of ``text`` that is a proper prefix of a form starts."""
    return next((i for i in range(len(text)) if could_start_at(text, i, secret)), len(text))


def could_start_at(text: str, i: int, secret: str) -> bool:
    return any(f.startswith(text[i:]) and len(text) - i < len(f) for f in forms(secret))


def expected(text: str, secret: str, mask: str) -> str:
    """The whole reply as shown: each secret masked, and a reply that ends 6 or more
    characters into a secret (cut while writing it) has that end masked too."""
    end = start_cut_at_end(text, secret)
    if len(text) - end >= 6:
        return redact(text[:end], [secret]).replace("***", mask) + mask
    return redact(text, [secret]).replace("***", mask)


def cut(text: str, points: Sequence[int]) -> list[str]:
    bounds = [0, *sorted({p % (len(text) + 1) for p in points}), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [text]


# Secrets with characters a URL encodes; text around them made of the same characters, so it
# is full of near misses and partial prefixes.
secrets = st.builds(lambda s: "sk-" + s, st.text(alphabet="ab/+=9 ", min_size=3, max_size=8))
filler = st.text(alphabet="sk-ab/+=9 %2F.x", max_size=12)


@st.composite
def replies(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """A secret, a text holding it in some of its forms, and the text cut into deltas."""
    secret = draw(secrets)
    parts = [draw(filler)]
    for _ in range(draw(st.integers(1, 3))):
        parts.append(draw(st.sampled_from(sorted(forms(secret)))))
        parts.append(draw(filler))
    text = "".join(parts)
    points = draw(st.lists(st.integers(0, len(text)), max_size=8))
    return secret, text, cut(text, points)


# -- the redactor alone ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(replies())
def test_pieces_joined_are_the_text_redacted_and_nothing_waits_needlessly(
    case: tuple[str, str, list[str]],
) -> None:
    secret, text, deltas = case
    redactor = StreamRedactor(lambda: [secret], mask="***")
    shown = ""
    so_far = ""
    for delta in deltas:
        piece = redactor.feed(delta)
        so_far += delta
        assert not leaks(piece, secret)
        shown += piece
        assert not leaks(shown, secret)
        if not could_start(so_far, secret):
            # nothing could still become a secret: all of it is out, in this very call
            assert shown == redact(so_far, [secret])
    shown += redactor.flush()
    assert shown == expected(text, secret, "***")
    assert not leaks(shown, secret)


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(alphabet="ab1", min_size=2, max_size=5),
    text=st.text(alphabet="ab1 .", max_size=30),
    points=st.lists(st.integers(0, 40), max_size=8),
)
def test_a_short_secret_stays_a_whole_word_rule_across_pieces(
    secret: str, text: str, points: list[int]
) -> None:
    """A secret under 6 characters is masked only where it stands alone: a piece boundary
    must not make a word's end look like a start (nor hide a standalone one)."""
    redactor = StreamRedactor(lambda: [secret], mask="***")
    shown = "".join(redactor.feed(d) for d in cut(text, points)) + redactor.flush()
    assert shown == redact(text, [secret])


@settings(max_examples=300, deadline=None)
@given(
    first=st.text(alphabet="abc", min_size=6, max_size=8),
    second=st.text(alphabet="abc", min_size=6, max_size=8),
    text=st.text(alphabet="abc ", max_size=30),
    points=st.lists(st.integers(0, 40), max_size=8),
)
def test_overlapping_secrets_are_never_released_in_two_parts(
    first: str, second: str, text: str, points: list[int]
) -> None:
    text = f"{text}{first}{second[:3]}{text}{second} end"  # "end" cannot start one
    redactor = StreamRedactor(lambda: [first, second], mask="***")
    shown = "".join(redactor.feed(d) for d in cut(text, points)) + redactor.flush()
    assert shown == redact(text, [first, second])


def test_text_that_cannot_start_a_secret_is_released_whole_at_once() -> None:
    redactor = StreamRedactor(lambda: [KEY], mask="***")
    assert redactor.feed("Hello there, ") == "Hello there, "
    assert redactor.feed("your key is s") == "your key is "  # "s" may start it
    assert redactor.feed("k-live-7f") == ""
    assert redactor.feed("3a/9Q+zz== ok") == "*** ok"
    assert redactor.feed(" sk-li") == " "
    assert redactor.feed("ght.") == "sk-light."  # it was not one after all
    assert redactor.feed(" sk") == " "
    assert redactor.flush() == "sk"  # the end: a bit of a key's start is just text
    assert redactor.feed("sk-live-7") == ""
    assert redactor.flush() == "***"  # cut while writing the key: none of it is shown


def test_no_secrets_means_no_waiting() -> None:
    redactor = StreamRedactor(list)
    assert redactor.feed("sk-") == "sk-"
    assert redactor.flush() == ""


def test_a_secret_learned_mid_stream_is_masked_from_then_on() -> None:
    known: list[str] = []
    redactor = StreamRedactor(lambda: known, mask="***")
    assert redactor.feed("token tok-") == "token tok-"
    known.append("tok-9a8b7c6d5e")
    assert redactor.feed("x and tok-9a8b") == "x and "
    assert redactor.feed("7c6d5e.") == "***."


# -- through a session -----------------------------------------------------------------------------


class StepLLM:
    """Streams ``deltas``; before each next one it notes what the events have shown so far."""

    def __init__(self, deltas: Sequence[str], shown: list[str]) -> None:
        self.deltas = list(deltas)
        self.shown = shown
        self.seen_before_next: list[str] = []
        self.api_key: str | None = None

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        for i, delta in enumerate(self.deltas):
            if i:
                self.seen_before_next.append("".join(self.shown))
            yield delta


def deltas_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def everything(events: list[Event]) -> str:
    return "\n".join([*map(repr, events), *(json.dumps(event_to_dict(e)) for e in events)])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=replies(), declared=st.booleans())
async def test_text_deltas_never_show_a_secret_and_never_lag_without_reason(
    case: tuple[str, str, list[str]], declared: bool
) -> None:
    secret, text, deltas = case
    shown: list[str] = []
    llm = StepLLM(deltas, shown)
    if declared:
        llm.api_key = secret  # a provider's own key, as providers declare it
    renderer = FakeTextRenderer()
    session = AvatarSession(llm=llm, renderer=renderer, secrets=[] if declared else [secret])
    events: list[Event] = []
    session.on_event(events.append)
    session.on_event(lambda e: shown.append(e.text) if isinstance(e, TextDelta) else None)
    async with session:
        await session.send("hi")
    # Before each next delta was asked for, everything that could not start a secret was out.
    written = ""
    for delta, seen in zip(deltas, llm.seen_before_next, strict=False):
        written += delta
        assert not leaks(seen, secret)
        if not could_start(written, secret):
            assert seen == redact_spoken(written, [secret])
    assert deltas_of(events) == expected(text, secret, SPOKEN_MASK)
    assert not leaks(everything(events), secret)
    # ... nor is it said, nor kept in history as said
    assert not any(leaks(t, secret) for t in renderer.spoken)
    assert not leaks(session.history[-1].content, secret)


async def test_what_is_spoken_and_recorded_says_redacted() -> None:
    llm = StepLLM(["Your key is sk-live", "-7f3a/9Q+", "zz== and that is all."], [])
    renderer = FakeTextRenderer()
    async with AvatarSession(llm=llm, renderer=renderer, secrets=[KEY]) as session:
        reply = await session.send("what is my key?")
    assert renderer.spoken == [f"Your key is {SPOKEN_MASK} and that is all."]
    assert reply == renderer.spoken[0]
    assert session.history[-1] == Message("assistant", reply)


@pytest.mark.parametrize("incremental", [False, True])
async def test_the_tts_is_never_sent_a_secret(incremental: bool) -> None:
    llm = StepLLM(["Key: sk-live-7", "f3a/9Q+zz", "==. Done."], [])
    tts: Any = FakeIncrementalTTS() if incremental else FakeTTS()
    renderer = FakeAudioRenderer()
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer, secrets=[KEY]) as session:
        assert session.incremental is incremental
        await session.send("hi")
        await session.say(f"Again: {KEY}.")
    sent = [s.text for s in tts.streams] if incremental else tts.texts
    assert sent
    assert not any(leaks(t, KEY) for t in sent)
    assert any(SPOKEN_MASK in t for t in sent)
    assert not any(leaks(m.content, KEY) for m in session.history if m.role == "assistant")


async def test_say_never_speaks_a_secret() -> None:
    renderer = FakeTextRenderer()
    events: list[Event] = []
    async with AvatarSession(llm=StepLLM([], []), renderer=renderer, secrets=[KEY]) as session:
        session.on_event(events.append)
        said = await session.say(f"The key is {quote(KEY, safe='')}.")
    assert said == f"The key is {SPOKEN_MASK}."
    assert renderer.spoken == [said]
    assert not leaks(everything(events), KEY)


class FailingLLM(StepLLM):
    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        for delta in self.deltas:
            yield delta
        raise ConnectionError("the stream broke")


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("Partial: sk-l", "Partial: sk-l"),  # too little of the key to say anything: shown
        ("Partial: sk-live-", f"Partial: {SPOKEN_MASK}"),  # cut while writing the key
    ],
)
async def test_held_text_is_shown_before_the_error_when_the_stream_fails(
    written: str, shown: str
) -> None:
    events: list[Event] = []
    llm = FailingLLM([written], [])
    async with AvatarSession(llm=llm, renderer=FakeTextRenderer(), secrets=[KEY]) as session:
        session.on_event(events.append)
        with pytest.raises(ProviderError):
            await session.send("hi")
    assert deltas_of(events) == shown  # nothing lost, nothing of the key
    kinds = [type(e) for e in events if isinstance(e, TextDelta | ErrorEvent | TurnMetrics)]
    assert kinds == [TextDelta, TextDelta, ErrorEvent, TurnMetrics]


class HangingLLM(StepLLM):
    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        for delta in self.deltas:
            yield delta
        await anyio.sleep_forever()


@pytest.mark.parametrize("how", ["interrupt", "cancel"])
async def test_held_text_is_shown_when_the_turn_is_cut(how: str) -> None:
    events: list[Event] = []
    llm = HangingLLM(["One. Two sk-live-7f3a"], [])
    renderer = FakeTextRenderer()
    async with AvatarSession(llm=llm, renderer=renderer, secrets=[KEY]) as session:
        session.on_event(events.append)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.send, "hi")
            await wait_until(lambda: any(isinstance(e, SentenceEnded) for e in events))
            assert deltas_of(events) == "One. Two "
            if how == "interrupt":
                await session.interrupt()
            else:
                tg.cancel_scope.cancel()
    assert deltas_of(events) == f"One. Two {SPOKEN_MASK}"  # cut while writing the key
    last_delta = max(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    metrics = next(i for i, e in enumerate(events) if isinstance(e, TurnMetrics))
    assert last_delta < metrics
    assert renderer.spoken == ["One."]  # the held words were never going to be said
    assert session.history[-1] == Message("assistant", "One.")


# -- transcripts -----------------------------------------------------------------------------------


def test_an_interim_transcript_never_shows_the_start_of_a_secret() -> None:
    session = AvatarSession(llm=StepLLM([], []), renderer=FakeTextRenderer(), secrets=[KEY])
    events: list[Event] = []
    session.on_event(events.append)
    session._emit(UserTranscript("my key is sk-live-7f", final=False))
    session._emit(UserTranscript(f"my key is {KEY} and sk-", final=False))
    session._emit(UserTranscript("my key is sk-light", final=False))
    session._emit(UserTranscript(f"my key is {KEY} and sk-", final=True))
    assert [e.text for e in events if isinstance(e, UserTranscript)] == [
        "my key is",
        "my key is *** and",
        "my key is sk-light",
        "my key is *** and sk-",  # final: the user's message as said, nothing to follow
    ]


@pytest.mark.parametrize("failing", ["stt", "vad"])
async def test_a_voice_failure_holding_a_key_is_cleaned_in_the_log_the_event_and_the_raise(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An STT failure ends one utterance, a VAD failure ends ``listen``: neither says the key."""
    error = ConnectionError(f"closed: wss://voice.example.test/?key={quote(KEY, safe='')}")
    stt = FakeSTT(["x"], error=error if failing == "stt" else None, error_at=0.2)
    vad = FakeVAD(error=error if failing == "vad" else None, error_at=0.2)
    session = AvatarSession(
        llm=StepLLM([], []), renderer=FakeTextRenderer(), stt=stt, vad=vad, secrets=[KEY]
    )
    events: list[Event] = []
    session.on_event(events.append)
    raised: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="avatarkit"):
        async with session:
            try:
                await session.listen(voice(speech=1.0, silence=1.0))
            except ProviderError as exc:
                raised.append(exc)
    assert [e.stage for e in events if isinstance(e, ErrorEvent)] == [failing]
    assert len(raised) == (failing == "vad")
    assert "closed" in caplog.text  # the failure is logged ...
    assert not leaks(caplog.text, KEY)  # ... without the key
    assert not leaks(everything(events), KEY)
    for exc in raised:
        assert not leaks("".join(traceback.format_exception(exc)), KEY)


async def voice(*, speech: float, silence: float) -> AsyncIterator[AudioChunk]:
    """Loud tone (speech to the fakes), then silence, in 20 ms chunks."""
    audio = tone(speech, 16000) + bytes(2 * round(silence * 16000))
    for i in range(0, len(audio), 640):
        yield AudioChunk(audio[i : i + 640], 16000)
        await anyio.lowlevel.checkpoint()
