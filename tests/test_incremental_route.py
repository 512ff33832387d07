"""The incremental route: a streaming TTS fed as the LLM writes, history cut at the word.

The fake incremental TTS turns every word (with its trailing space) into ``ms_per_char`` of
audio per character at once and times the word from its first to its last letter; the fake
audio renderer records every chunk it takes. So the words heard are exactly those whose last
letter's audio lies inside what the renderer took, and the tests compute that independently.
"""

from __future__ import annotations

import re

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarkit import AvatarSession, ProviderError, ProviderTimeout
from avatarkit.events import Event, SentenceEnded, SentenceStarted, TextDelta
from avatarkit.session import Timeouts
from avatarkit.testing import (
    FakeAudioRenderer,
    FakeIncrementalTTS,
    FakeLLM,
    FakeSpeechStream,
    FakeTTS,
    wait_until,
)

REPLY = "Hello there my good friend, how are you doing today? I am fine. Thanks for asking!"
MS = 10.0


def session(llm: FakeLLM, tts: object, renderer: FakeAudioRenderer, **kw: object) -> AvatarSession:
    return AvatarSession(llm=llm, tts=tts, renderer=renderer, **kw)  # type: ignore[arg-type]


def heard_words(pushed: str, taken_seconds: float, ms: float = MS) -> list[str]:
    """Words of ``pushed`` whose audio ended within ``taken_seconds`` (the fake's timing rule)."""
    words: list[str] = []
    clock = 0.0
    for match in re.finditer(r"\S+\s*", pushed):
        word = match.group().strip()
        if clock + len(word) * ms / 1000 > taken_seconds + 1e-6:
            break
        words.append(word)
        clock += len(match.group()) * ms / 1000
    return words


def seconds_taken(renderer: FakeAudioRenderer) -> float:
    """Seconds of audio the renderer has taken so far."""
    return sum(u.duration for u in renderer.utterances)


def assistant(s: AvatarSession) -> list[str]:
    return [m.content for m in s.history if m.role == "assistant"]


def test_routing_picks_the_stream_when_the_tts_has_one() -> None:
    llm, renderer = FakeLLM(), FakeAudioRenderer()
    assert session(llm, FakeIncrementalTTS(), renderer).incremental
    with pytest.raises(Exception, match="has no synthesize"):
        session(llm, FakeIncrementalTTS(), renderer, incremental=False)

    class Both(FakeIncrementalTTS):
        synthesize = FakeTTS.synthesize

    assert session(llm, Both(), renderer).incremental
    assert not session(llm, Both(), renderer, incremental=False).incremental
    assert not session(llm, FakeTTS(), renderer).incremental
    with pytest.raises(Exception, match="has no open_stream"):
        session(llm, FakeTTS(), renderer, incremental=True)


async def test_first_audio_before_the_first_sentence_is_written() -> None:
    llm = FakeLLM([REPLY], token_delay=0.02)
    renderer = FakeAudioRenderer()
    events: list[tuple[float, Event]] = []
    async with session(llm, FakeIncrementalTTS(), renderer) as s:
        s.on_event(lambda e: events.append((anyio.current_time(), e)))
        reply = await s.send("Hi")
    first_stop = next(t for t, e in events if isinstance(e, TextDelta) and "?" in e.text)
    first_audio = renderer.utterances[0].first_audio_at
    assert first_audio is not None
    assert first_audio < first_stop  # speech began before the LLM wrote the first "?"
    assert reply.split() == REPLY.split()
    assert len(renderer.utterances) == 1  # the whole turn is one utterance
    started = [e.text for _, e in events if isinstance(e, SentenceStarted)]
    assert started == [
        "Hello there my good friend, how are you doing today?",
        "I am fine.",
        "Thanks for asking!",
    ]
    ended = [e for _, e in events if isinstance(e, SentenceEnded)]
    assert [e.spoken for e in ended] == started
    assert not any(e.interrupted for e in ended)


async def test_interrupt_mid_sentence_records_exactly_the_words_taken() -> None:
    llm = FakeLLM([REPLY], token_delay=0.1)  # still writing when the interrupt comes (1.7 s)
    renderer = FakeAudioRenderer(realtime=True)
    tts = FakeIncrementalTTS()
    async with session(llm, tts, renderer) as s:
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.send, "Hi")
            # Once some words were heard (a fixed sleep could end before a loaded machine
            # had played any audio at all).
            await wait_until(lambda: seconds_taken(renderer) >= 0.15)
            await s.interrupt()
            # the stream is closed (not finished) and the LLM stopped by the time it returns
            assert tts.streams[0].cancelled
            assert llm.cancelled == 1
        taken = renderer.utterances[0].duration
        expected = heard_words(tts.streams[0].text, taken)
        assert 0 < len(expected) < len(REPLY.split())
        assert " ".join(assistant(s)).split() == expected


@pytest.mark.parametrize("timings", [True, False])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(min_value=0.0, max_value=1.2), token_delay=st.sampled_from([0.0, 0.004]))
async def test_history_never_holds_more_than_the_renderer_took(
    timings: bool, cut: float, token_delay: float
) -> None:
    llm = FakeLLM([REPLY], token_delay=token_delay)
    renderer = FakeAudioRenderer(realtime=True)
    tts = FakeIncrementalTTS(timings=timings)
    ended: list[SentenceEnded] = []
    async with session(llm, tts, renderer) as s:
        s.on_event(lambda e: ended.append(e) if isinstance(e, SentenceEnded) else None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.send, "Hi")
            await anyio.sleep(cut)
            await s.interrupt()
        taken = sum(u.duration for u in renderer.utterances)
        said = " ".join(assistant(s)).split()
        heard = heard_words(tts.streams[0].text, taken) if tts.streams else []
        assert said == heard[: len(said)]  # a prefix of what was heard, never more
        if timings:
            assert said == heard  # with word timings: exactly what was heard
        assert " ".join(e.spoken or "" for e in ended).split() == said


class FirstWordOnlyStream(FakeSpeechStream):
    """A service still synthesising: only the first word pushed has audio so far, and the
    stream does not end (no word timings either)."""

    async def push(self, text: str) -> None:
        if self.pushed:
            self.pushed.append(text)
            return
        head = re.match(r"\s*\S+\s*", text)
        first = head.group() if head else text
        await super().push(first)
        if text[len(first) :]:
            self.pushed.append(text[len(first) :])

    async def end(self) -> None:
        self.ended = True  # the stream stays open: the rest of the audio is still to come


class StillSynthesising(FakeIncrementalTTS):
    def open_stream(self) -> FakeSpeechStream:
        stream = FirstWordOnlyStream(self)
        self.streams.append(stream)
        return stream


async def test_without_timings_text_with_no_audio_yet_is_not_heard() -> None:
    """Regression: with the audio of the first word taken and nothing more made yet, the whole
    reply pushed was recorded as said (the audio taken over the audio made was 1)."""
    tts = StillSynthesising(timings=False)
    renderer = FakeAudioRenderer()
    async with session(FakeLLM([REPLY]), tts, renderer) as s:
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.send, "Hi")
            await wait_until(lambda: bool(tts.streams) and tts.streams[0].ended)
            await wait_until(lambda: seconds_taken(renderer) > 0)
            await s.interrupt()
        said = " ".join(assistant(s)).split()
    heard = heard_words(tts.streams[0].text, seconds_taken(renderer))
    assert heard == ["Hello"]
    assert said == heard[: len(said)]  # a prefix of what was heard, never more


async def test_a_stream_failure_keeps_what_was_heard() -> None:
    llm = FakeLLM([REPLY])
    renderer = FakeAudioRenderer()
    tts = FakeIncrementalTTS(error=RuntimeError("socket gone"), error_after=4)
    errors: list[Event] = []
    async with session(llm, tts, renderer) as s:
        s.on_event(lambda e: errors.append(e) if e.type == "error" else None)
        with pytest.raises(ProviderError, match="socket gone"):
            await s.send("Hi")
        taken = renderer.utterances[0].duration
        assert " ".join(assistant(s)).split() == heard_words(tts.streams[0].text, taken)
        assert [e.stage for e in errors] == ["tts"]  # type: ignore[attr-defined]
        tts.error = None
        assert await s.send("Again") == REPLY  # usable afterwards


async def test_an_llm_failure_mid_reply_keeps_what_was_heard() -> None:
    llm = FakeLLM([REPLY], error=RuntimeError("llm broke"), error_after=8)
    renderer = FakeAudioRenderer()
    tts = FakeIncrementalTTS()
    async with session(llm, tts, renderer) as s:
        with pytest.raises(ProviderError, match="llm broke"):
            await s.send("Hi")
        said = " ".join(assistant(s)).split()
        taken = sum(u.duration for u in renderer.utterances)
        assert said == heard_words(tts.streams[0].text, taken)[: len(said)]


async def test_opening_the_stream_fails_cleanly() -> None:
    class Broken(FakeIncrementalTTS):
        def open_stream(self):  # type: ignore[override]
            raise RuntimeError("no socket for you")

    async with session(FakeLLM([REPLY]), Broken(), FakeAudioRenderer()) as s:
        with pytest.raises(ProviderError, match="no socket for you"):
            await s.send("Hi")
        assert assistant(s) == []


async def test_no_first_audio_in_time_is_a_tts_timeout() -> None:
    tts = FakeIncrementalTTS(first_audio_delay=5)
    renderer = FakeAudioRenderer()
    timeouts = Timeouts(tts_first_chunk=0.1)
    async with session(FakeLLM([REPLY]), tts, renderer, timeouts=timeouts) as s:
        with anyio.fail_after(3), pytest.raises(ProviderTimeout, match=r"no audio within 0\.1"):
            await s.send("Hi")
        assert assistant(s) == []


async def test_say_goes_through_the_stream() -> None:
    tts = FakeIncrementalTTS()
    async with session(FakeLLM(), tts, FakeAudioRenderer()) as s:
        assert await s.say("Welcome. **Nice** to see you.") == "Welcome. Nice to see you."
    assert tts.streams[0].text.split() == ["Welcome.", "Nice", "to", "see", "you."]
    assert tts.streams[0].flushes == 2
    assert tts.streams[0].completed


async def test_resampled_for_the_renderer() -> None:
    renderer = FakeAudioRenderer(sample_rate=24000)
    async with session(FakeLLM([REPLY]), FakeIncrementalTTS(), renderer) as s:
        await s.send("Hi")
    chunks = renderer.utterances[0].chunks
    assert {c.sample_rate for c in chunks} == {24000}
    total = sum(c.duration for c in chunks)
    assert total == pytest.approx(len(REPLY + " ") * MS / 1000, abs=0.01)


async def test_the_callers_cancellation_keeps_what_was_heard() -> None:
    llm = FakeLLM([REPLY], token_delay=0.1)  # the reply is heard over 1.7 s
    renderer = FakeAudioRenderer(realtime=True)
    tts = FakeIncrementalTTS()
    async with session(llm, tts, renderer) as s:
        # Cancelled once some words were heard (a fixed 0.45 s could end before a loaded
        # machine had played any audio at all).
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_once_heard() -> None:
                    await wait_until(lambda: seconds_taken(renderer) >= 0.15)
                    scope.cancel()

                tg.start_soon(cancel_once_heard)
                await s.send("Hi")
        assert scope.cancelled_caught
        taken = renderer.utterances[0].duration
        expected = heard_words(tts.streams[0].text, taken)
        assert 0 < len(expected) < len(REPLY.split())
        assert " ".join(assistant(s)).split() == expected
        assert tts.streams[0].cancelled or tts.streams[0].completed


async def test_a_renderer_failure_keeps_what_was_heard() -> None:
    class Failing(FakeAudioRenderer):
        """Takes ten chunks from the session, plays nine, then fails."""

        taken = 0.0

        async def speak(self, audio):  # type: ignore[no-untyped-def,override]
            async def counted():  # type: ignore[no-untyped-def]
                count = 0
                async for chunk in audio:
                    self.taken += chunk.duration
                    count += 1
                    if count == 10:
                        raise RuntimeError("speaker unplugged")
                    yield chunk

            await super().speak(counted())

    renderer = Failing()
    tts = FakeIncrementalTTS()
    async with session(FakeLLM([REPLY]), tts, renderer) as s:
        with pytest.raises(ProviderError, match="speaker unplugged"):
            await s.send("Hi")
        taken = renderer.taken
        said = " ".join(assistant(s)).split()
        assert said == heard_words(tts.streams[0].text, taken)
        assert 0 < len(said) < len(REPLY.split())
