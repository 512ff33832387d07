"""Listening: the user's audio → turns and barge-in, with fakes, on asyncio and trio.

The audio is made of tone (speech to the fake VAD/STT) and silence. A feeder yields it as fast
as the session reads it, and can wait for the session between pieces (e.g. until the avatar is
speaking), so every scenario is exact without depending on the wall clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarkit import AvatarSession, TurnOptions
from avatarkit.errors import CapabilityError, ProviderError, SessionError
from avatarkit.events import (
    ErrorEvent,
    Event,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
    VoiceMetrics,
)
from avatarkit.providers import AudioChunk, Message, Transcript
from avatarkit.testing import (
    FakeLLM,
    FakeSTT,
    FakeTextRenderer,
    FakeVAD,
    tone,
    wait_until,
)

RATE = 16000
Step = tuple[str, float] | Callable[[], Awaitable[None]]


def speech(seconds: float) -> tuple[str, float]:
    return ("speech", seconds)


def pause(seconds: float) -> tuple[str, float]:
    return ("silence", seconds)


async def feed(
    *steps: Step, rate: int = RATE, channels: int = 1, chunk_ms: int = 20
) -> AsyncIterator[AudioChunk]:
    """Audio from ``steps``; a callable step is awaited between pieces."""
    for step in steps:
        if callable(step):
            await step()
            continue
        kind, seconds = step
        mono = tone(seconds, rate) if kind == "speech" else bytes(2 * round(seconds * rate))
        data = (
            mono
            if channels == 1
            else b"".join(mono[i : i + 2] * channels for i in range(0, len(mono), 2))
        )
        step_bytes = round(rate * chunk_ms / 1000) * 2 * channels
        for i in range(0, len(data), step_bytes):
            yield AudioChunk(data[i : i + step_bytes], rate, channels)
            await anyio.lowlevel.checkpoint()


class Recorder:
    def __init__(self, session: AvatarSession) -> None:
        self.events: list[Event] = []
        session.on_event(self.events.append)

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    def finals(self) -> list[str]:
        return [e.text for e in self.of(UserTranscript) if e.final]


def make(
    transcripts: list[str],
    *,
    replies: tuple[str, ...] = ("Sure thing.",),
    seconds_per_char: float = 0.0,
    streaming: bool = False,
    with_vad: bool = True,
    **turn: Any,
) -> tuple[AvatarSession, FakeSTT, FakeTextRenderer, FakeLLM]:
    stt = FakeSTT(transcripts, streaming=streaming)
    renderer = FakeTextRenderer(seconds_per_char=seconds_per_char)
    llm = FakeLLM(replies)
    session = AvatarSession(
        llm=llm,
        renderer=renderer,
        stt=stt,
        vad=FakeVAD() if with_vad else None,
        turn=TurnOptions(**turn),
    )
    return session, stt, renderer, llm


def user_messages(session: AvatarSession) -> list[str]:
    return [m.content for m in session.history if m.role == "user"]


async def test_each_user_turn_is_answered_once() -> None:
    session, stt, renderer, llm = make(["hello there", "what time is it"])
    async with session:
        rec = Recorder(session)
        await session.listen(feed(pause(0.3), speech(0.8), pause(1.0), speech(0.6), pause(1.0)))
    assert user_messages(session) == ["hello there", "what time is it"]
    assert len(llm.calls) == 2
    assert rec.finals() == ["hello there", "what time is it"]
    assert len(stt.calls) == 2  # one transcribe() per utterance
    starts = [e.at for e in rec.of(UserSpeechStarted)]
    ends = [e.at for e in rec.of(UserSpeechEnded)]
    assert starts == [pytest.approx(0.3, abs=0.03), pytest.approx(2.1, abs=0.03)]
    assert ends == [pytest.approx(1.1, abs=0.03), pytest.approx(2.7, abs=0.03)]
    # each STT call got its utterance, the pre-roll before it and the silence the VAD waited
    # for after it (0.2 s), not the whole file
    assert stt.calls[0] == pytest.approx(0.2 + 0.8 + 0.2, abs=0.05)
    assert stt.calls[1] == pytest.approx(0.2 + 0.6 + 0.2, abs=0.05)
    assert renderer.spoken == ["Sure thing.", "Sure thing."]


async def test_a_short_pause_does_not_end_the_turn() -> None:
    session, stt, _, llm = make(["I want", "a coffee"], end_silence=0.8)
    async with session:
        await session.listen(feed(speech(0.5), pause(0.5), speech(0.5), pause(1.2)))
    assert user_messages(session) == ["I want a coffee"]
    assert len(llm.calls) == 1
    assert len(stt.calls) == 2


async def test_the_hangover_is_configurable() -> None:
    session, _, _, _llm = make(["I want", "a coffee"], end_silence=0.3)
    async with session:
        await session.listen(feed(speech(0.5), pause(0.5), speech(0.5), pause(1.2)))
    assert user_messages(session) == ["I want", "a coffee"]


async def test_input_ending_mid_speech_still_makes_a_turn() -> None:
    session, _, _, _ = make(["cut short"])
    async with session:
        await session.listen(feed(pause(0.2), speech(0.7)))
    assert user_messages(session) == ["cut short"]


async def test_speech_without_words_makes_no_turn() -> None:
    session, _, _, llm = make(["", "real words"])
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.6), pause(1.0), speech(0.6), pause(1.0)))
    assert user_messages(session) == ["real words"]
    assert rec.finals() == ["real words"]
    assert len(llm.calls) == 1


async def test_stereo_input_at_any_rate_is_converted() -> None:
    session, stt, _, _ = make(["hello"])
    async with session:
        await session.listen(feed(pause(0.2), speech(0.6), pause(1.0), rate=44100, channels=2))
    assert user_messages(session) == ["hello"]
    assert stt.calls[0] == pytest.approx(0.2 + 0.6 + 0.2, abs=0.08)


def _speaking(session: AvatarSession) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await wait_until(lambda: session.state == "speaking")

    return wait


def _idle(session: AvatarSession, llm: FakeLLM, turns: int) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await wait_until(lambda: len(llm.calls) >= turns and session.state == "idle")

    return wait


LONG_REPLY = "This is the first sentence of a long reply. And here is a second one. And a third."


def _said(renderer: FakeTextRenderer, sentences: int) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await wait_until(lambda: len(renderer.completed) >= sentences)

    return wait


async def test_speech_during_the_reply_interrupts_it() -> None:
    session, _, renderer, llm = make(
        ["tell me a story", "stop please"], replies=(LONG_REPLY, "Okay."), seconds_per_char=0.02
    )
    async with session:
        rec = Recorder(session)
        await session.listen(
            feed(speech(0.6), pause(1.0), _said(renderer, 1), speech(0.8), pause(1.0))
        )
    assert renderer.interrupts >= 1
    assert user_messages(session) == ["tell me a story", "stop please"]
    replies = [m.content for m in session.history if m.role == "assistant"]
    assert replies[-1] == "Okay."
    # history holds only what was said: the first sentence, maybe words of the second
    assert replies[0].startswith("This is the first sentence of a long reply.")
    assert "And a third." not in replies[0]
    assert LONG_REPLY.startswith(replies[0])
    assert rec.finals() == ["tell me a story", "stop please"]
    assert len(llm.calls) == 2
    # the second turn's LLM call saw the cut reply, not the whole one
    assert Message("assistant", replies[0]) in llm.calls[1]


async def test_a_cough_shorter_than_the_minimum_does_not_interrupt() -> None:
    session, stt, renderer, llm = make(
        ["tell me a story", "ahem"],
        replies=(LONG_REPLY,),
        seconds_per_char=0.01,
        min_interruption_speech=0.5,
    )
    async with session:
        await session.listen(
            feed(
                speech(0.6),
                pause(1.0),
                _speaking(session),
                speech(0.2),  # the cough, shorter than the minimum
                pause(1.0),
                _idle(session, llm, 1),
                pause(0.2),
            )
        )
    assert renderer.interrupts == 0
    assert len(llm.calls) == 1
    assert user_messages(session) == ["tell me a story"]
    assert next(m for m in session.history if m.role == "assistant").content == LONG_REPLY
    assert stt.finals == ["tell me a story", "ahem"]  # heard, then ignored


async def test_interruptions_can_be_turned_off() -> None:
    session, _, _renderer, llm = make(
        ["tell me a story", "stop please"],
        replies=(LONG_REPLY,),
        seconds_per_char=0.01,
        interruptions=False,
    )
    async with session:
        await session.listen(
            feed(speech(0.6), pause(1.0), _speaking(session), speech(0.8), pause(1.0))
        )
    # the speech is a turn of its own, taken when it ends (send() barges in then)
    assert user_messages(session) == ["tell me a story", "stop please"]
    assert len(llm.calls) == 2


@pytest.mark.parametrize("words", ["no", "wait stop now"])
async def test_minimum_words_before_an_interruption(words: str) -> None:
    session, _, renderer, llm = make(
        ["tell me a story", words],
        replies=(LONG_REPLY, "Okay."),
        seconds_per_char=0.05,
        min_interruption_words=2,
        min_interruption_speech=0.0,
    )
    async with session:
        await session.listen(
            feed(
                speech(0.6),
                pause(1.0),
                _speaking(session),
                speech(0.8),
                pause(1.0),
                _idle(session, llm, 1),
            )
        )
    if len(words.split()) >= 2:
        assert renderer.interrupts >= 1
        assert user_messages(session) == ["tell me a story", words]
    else:
        assert renderer.interrupts == 0
        assert user_messages(session) == ["tell me a story"]


@pytest.mark.parametrize("mode", ["resume", "drop"])
async def test_false_interruption_resumes_or_drops(mode: str) -> None:
    session, _, renderer, llm = make(
        ["tell me a story", ""],  # the "interruption" has no words: noise
        replies=(LONG_REPLY,),
        seconds_per_char=0.02,
        false_interruption=mode,
    )
    async with session:
        await session.listen(
            feed(
                speech(0.6),
                pause(1.0),
                _said(renderer, 1),
                speech(0.8),
                pause(1.0),
                _idle(session, llm, 1),
            )
        )
        await wait_until(lambda: session.state == "idle")
    assert renderer.interrupts >= 1
    assert len(llm.calls) == 1  # no turn for the noise
    assert user_messages(session) == ["tell me a story"]
    replies = [m.content for m in session.history if m.role == "assistant"]
    assert replies[0].startswith("This is the first sentence of a long reply.")
    assert replies[0] != LONG_REPLY
    if mode == "resume":
        # what was cut is said again, from the start of the sentence that was cut
        assert replies[1:] == ["And here is a second one. And a third."]
    else:
        assert len(replies) == 1
        assert replies[0] != LONG_REPLY


async def test_streaming_stt_with_vad() -> None:
    session, stt, _, _llm = make(["hello there", "goodbye"], streaming=True)
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.8), pause(1.2), speech(0.6), pause(1.2)))
    assert len(stt.calls) == 1  # one long transcribe()
    assert user_messages(session) == ["hello there", "goodbye"]
    interims = [e.text for e in rec.of(UserTranscript) if not e.final]
    assert "hello" in interims


async def test_streaming_stt_without_vad_uses_its_own_endpoints() -> None:
    session, _stt, _, _ = make(["hello there", "goodbye"], streaming=True, with_vad=False)
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.8), pause(1.2), speech(0.6), pause(1.2)))
    assert user_messages(session) == ["hello there", "goodbye"]
    assert len(rec.of(UserSpeechStarted)) == 2


async def test_whole_utterance_stt_needs_a_vad() -> None:
    with pytest.raises(CapabilityError, match="needs a VAD"):
        AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer(), stt=FakeSTT())


async def test_listen_needs_an_stt_and_a_started_session() -> None:
    session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer())
    async with session:
        with pytest.raises(SessionError, match="needs an STT"):
            await session.listen(feed(speech(0.1)))
    voiced, *_ = make(["x"])
    with pytest.raises(SessionError, match="start the session"):
        await voiced.listen(feed(speech(0.1)))


async def test_an_stt_failure_skips_one_utterance_and_listening_goes_on() -> None:
    class FailsOnce(FakeSTT):
        def __init__(self) -> None:
            super().__init__(["second try"])
            self.failures = 0

        async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Any]:
            if not self.failures:
                self.failures += 1
                async for _ in audio:
                    raise RuntimeError("model crashed")
            async for item in super().transcribe(audio):
                yield item

    stt = FailsOnce()
    session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer(), stt=stt, vad=FakeVAD())
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.5), pause(1.0), speech(0.5), pause(1.0)))
    errors = rec.of(ErrorEvent)
    assert [e.stage for e in errors] == ["stt"]
    assert "model crashed" in errors[0].message
    assert user_messages(session) == ["second try"]


async def test_a_vad_failure_ends_listen_with_a_provider_error() -> None:
    vad = FakeVAD(error=RuntimeError("vad broke"), error_at=0.5)
    session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer(), stt=FakeSTT(["x"]), vad=vad)
    async with session:
        rec = Recorder(session)
        with pytest.raises(ProviderError, match="vad broke"):
            await session.listen(feed(speech(2.0), pause(1.0)))
    assert [e.stage for e in rec.of(ErrorEvent)] == ["vad"]


async def test_cancelling_listen_leaves_the_session_usable() -> None:
    session, _, renderer, _llm = make(["hello"], seconds_per_char=0.05, replies=(LONG_REPLY,))

    async def forever() -> AsyncIterator[AudioChunk]:
        async with aclosing(feed(speech(0.6), pause(1.0))) as first:
            async for chunk in first:
                yield chunk
        while True:
            yield AudioChunk(bytes(640), RATE)
            await anyio.sleep(0.01)

    async with session:
        with anyio.move_on_after(0.5):
            await session.listen(forever())
        assert await session.send("typed") == LONG_REPLY
        assert user_messages(session)[-1] == "typed"
    assert renderer.closed == 1


async def test_voice_metrics_follow_each_spoken_turn() -> None:
    session, _, _, _ = make(["hello", "again"])
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.5), pause(1.0), speech(0.5), pause(1.0)))
    metrics = rec.of(VoiceMetrics)
    assert len(metrics) == 2
    for m in metrics:
        assert m.to_final_transcript is not None
        assert m.to_first_token is not None
        assert m.to_first_speech is not None
        assert 0 <= m.to_final_transcript <= m.to_first_token <= m.to_first_speech


async def test_typed_send_works_alongside_listen() -> None:
    session, _, _, llm = make(["spoken words"], replies=("Hi.",))

    async with session:

        async def type_meanwhile() -> None:
            await session.send("typed words")

        async with anyio.create_task_group() as tg:
            tg.start_soon(type_meanwhile)
            await session.listen(feed(_idle(session, llm, 1), speech(0.5), pause(1.0)))
    assert user_messages(session) == ["typed words", "spoken words"]


async def test_a_slow_stt_does_not_merge_turns_when_audio_comes_faster_than_real_time() -> None:
    # The turn boundary is decided on the audio's clock; the words may come later.
    stt = FakeSTT(["first turn", "second turn", "third turn"], final_delay=0.2)
    session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer(), stt=stt, vad=FakeVAD())
    async with session:
        rec = Recorder(session)
        await session.listen(
            feed(speech(0.5), pause(1.0), speech(0.5), pause(1.0), speech(0.5), pause(0.1))
        )
    assert user_messages(session) == ["first turn", "second turn", "third turn"]
    assert rec.finals() == ["first turn", "second turn", "third turn"]


async def test_streaming_finals_that_never_come_time_out_on_the_audio_clock() -> None:
    class Mute(FakeSTT):
        """Streams, hears speech, never says a word."""

        async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Any]:
            async for _ in audio:
                pass
            if False:  # pragma: no cover - an async generator that yields nothing
                yield None

    stt = Mute(streaming=True)
    session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer(), stt=stt, vad=FakeVAD())
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.5), pause(3.0)))
    assert user_messages(session) == []
    assert len(rec.of(UserSpeechEnded)) == 1


# -- any rhythm of speech and pauses -------------------------------------------------------------


# durations in 20 ms frames, away from the thresholds (VAD min_silence 0.2 s, end_silence 0.6 s)
_speech = st.integers(3, 40)
_gap = st.one_of(st.integers(2, 8), st.integers(12, 28), st.integers(32, 70))


async def _rhythm(pattern: list[tuple[int, int]]) -> None:
    frames = 0.02
    names = [f"u{i + 1}" for i in range(len(pattern))]
    # what the fakes must produce: a VAD utterance per run of speech joined by gaps < 0.2 s,
    # a turn per run of utterances joined by gaps < 0.6 s
    utterances: list[list[str]] = []
    turns: list[list[int]] = []
    for i, (_, gap_before) in enumerate(pattern):
        gap = gap_before * frames
        if i == 0 or gap >= 0.6:
            turns.append([])
        if i == 0 or gap >= 0.2:
            utterances.append([])
            turns[-1].append(len(utterances) - 1)
        utterances[-1].append(names[i])
    transcripts = [" ".join(u) for u in utterances]
    expected = [" ".join(transcripts[k] for k in turn) for turn in turns]
    stt = FakeSTT(transcripts)
    session = AvatarSession(
        llm=FakeLLM(["Yes."]),
        renderer=FakeTextRenderer(),
        stt=stt,
        vad=FakeVAD(),
        turn=TurnOptions(interruptions=False),
    )
    steps: list[Step] = []
    for speech_frames, gap_frames in pattern:
        steps += [pause(gap_frames * frames), speech(speech_frames * frames)]
    steps.append(pause(1.0))
    async with session:
        rec = Recorder(session)
        await session.listen(feed(*steps))
    assert stt.finals == transcripts  # one STT call per VAD utterance, in order
    assert rec.finals() == expected  # each turn once, in order, whole
    assert user_messages(session) == expected
    assert len(rec.of(UserSpeechStarted)) == len(rec.of(UserSpeechEnded)) == len(utterances)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.lists(st.tuples(_speech, _gap), min_size=1, max_size=6))
def test_any_rhythm_of_speech_makes_the_expected_turns(
    anyio_backend: str, pattern: list[tuple[int, int]]
) -> None:
    anyio.run(_rhythm, pattern, backend=anyio_backend)


async def _endless() -> AsyncIterator[AudioChunk]:
    async with aclosing(feed(speech(0.5), pause(1.0))) as first:
        async for chunk in first:
            yield chunk
    while True:
        yield AudioChunk(bytes(640), RATE)
        await anyio.sleep(0.005)


async def test_closing_the_session_ends_listen() -> None:
    session, _, _, llm = make(["hello"])
    async with session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.listen, _endless())
            await wait_until(lambda: len(llm.calls) == 1)
            await session.close()
    assert user_messages(session) == ["hello"]


async def test_one_audio_stream_at_a_time() -> None:
    session, _, _, llm = make(["hello"])
    async with session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.listen, _endless())
            await wait_until(lambda: len(llm.calls) == 1)
            with pytest.raises(SessionError, match="already listening"):
                await session.listen(feed(speech(0.1)))
            tg.cancel_scope.cancel()
        # and once the first has stopped, listening again works
        await session.listen(feed(pause(0.2)))


async def test_a_failing_reply_is_reported_and_the_next_spoken_turn_works() -> None:
    from avatarkit.errors import ProviderError as _ProviderError

    class FailsFirst(FakeLLM):
        async def stream(self, messages: Any) -> AsyncIterator[str]:
            if not self.calls:
                self.calls.append(list(messages))
                raise _ProviderError("model overloaded", provider="fake")
            async for token in super().stream(messages):
                yield token

    llm = FailsFirst(["Fine now."])
    session = AvatarSession(
        llm=llm, renderer=FakeTextRenderer(), stt=FakeSTT(["one", "two"]), vad=FakeVAD()
    )
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.5), pause(1.0), speech(0.5), pause(1.0)))
    assert [e.stage for e in rec.of(ErrorEvent)] == ["llm"]
    assert user_messages(session) == ["one", "two"]
    assert session.history[-1] == Message("assistant", "Fine now.")


async def test_no_audio_at_all_returns_at_once() -> None:
    session, stt, _, llm = make(["never"])
    async with session:
        await session.listen(feed())
    assert stt.calls == []
    assert llm.calls == []


async def test_the_input_rate_may_change_midway() -> None:
    session, stt, _, _ = make(["first", "second"])

    async def mixed() -> AsyncIterator[AudioChunk]:
        async with aclosing(feed(speech(0.5), pause(1.0))) as a:
            async for chunk in a:
                yield chunk
        async with aclosing(feed(speech(0.5), pause(1.0), rate=44100, channels=2)) as b:
            async for chunk in b:
                yield chunk

    async with session:
        await session.listen(mixed())
    assert user_messages(session) == ["first", "second"]
    assert stt.calls[1] == pytest.approx(0.2 + 0.5 + 0.2, abs=0.08)


async def _cancel_after(frames: int, streaming: bool) -> None:
    stt = FakeSTT(["one", "two", "three"], streaming=streaming, final_delay=0.001)
    llm = FakeLLM([LONG_REPLY])
    renderer = FakeTextRenderer(seconds_per_char=0.0005)
    session = AvatarSession(llm=llm, renderer=renderer, stt=stt, vad=FakeVAD())
    given = 0
    closed = False

    async def audio() -> AsyncIterator[AudioChunk]:
        nonlocal given, closed
        try:
            async with aclosing(
                feed(speech(0.4), pause(0.8), speech(0.6), pause(0.8), speech(0.4), pause(0.8))
            ) as chunks:
                async for chunk in chunks:
                    given += 1
                    if given == frames:
                        await anyio.sleep(0.01)  # let replies get going at this point
                    yield chunk
        finally:
            closed = True

    async with session:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_reached() -> None:
                    await wait_until(lambda: given >= frames)
                    scope.cancel()

                tg.start_soon(cancel_when_reached)
                await session.listen(audio())
                scope.cancel()
        assert closed  # the caller's audio iterator was closed
        assert stt.completed + stt.cancelled == len(stt.calls)  # no STT call left running
        # the session is still usable, and no listener is left behind
        await session.interrupt()
        assert await session.send("typed") == LONG_REPLY
        await session.listen(feed(pause(0.1)))
    assert renderer.closed == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.integers(1, 170), streaming=st.booleans())
def test_cancelling_listen_at_any_frame_leaves_nothing_behind(
    anyio_backend: str, frames: int, streaming: bool
) -> None:
    anyio.run(_cancel_after, frames, streaming, backend=anyio_backend)


async def test_a_streaming_stt_that_stops_early_is_an_error_not_a_hang() -> None:
    class Quits(FakeSTT):
        async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Any]:
            heard = 0.0
            async for chunk in audio:
                heard += chunk.duration
                if heard >= 0.5:
                    break  # the service went away without an error
            yield Transcript("final", "partial words")

    session = AvatarSession(
        llm=FakeLLM(), renderer=FakeTextRenderer(), stt=Quits(streaming=True), vad=FakeVAD()
    )
    async with session:
        rec = Recorder(session)
        with pytest.raises(ProviderError, match="stopped transcribing before the audio ended"):
            await session.listen(feed(speech(0.3), pause(3.0), speech(0.5), pause(1.0)))
    assert [e.stage for e in rec.of(ErrorEvent)] == ["stt"]


async def test_a_vad_that_stops_early_is_an_error_not_a_silent_deafness() -> None:
    class Quits(FakeVAD):
        async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Any]:
            async for _ in audio:
                break
            if False:  # pragma: no cover - an async generator that yields nothing
                yield None

    session = AvatarSession(
        llm=FakeLLM(), renderer=FakeTextRenderer(), stt=FakeSTT(["x"]), vad=Quits()
    )
    async with session:
        with pytest.raises(ProviderError, match="stopped detecting before the audio ended"):
            await session.listen(feed(speech(0.5), pause(1.0)))


class Turns:
    """A ``turns`` target in front of the session (as serve's page queue is): records every
    call, then passes it on."""

    def __init__(self, session: AvatarSession) -> None:
        self.session = session
        self.calls: list[tuple[str, str]] = []

    async def send(self, text: str) -> str:
        self.calls.append(("send", text))
        return await self.session.send(text)

    async def say(self, text: str) -> str:
        self.calls.append(("say", text))
        return await self.session.say(text)

    async def interrupt(self) -> None:
        self.calls.append(("interrupt", ""))
        await self.session.interrupt()


async def test_turns_go_to_the_turns_target_when_one_is_given() -> None:
    """listen(turns=...) hands every heard turn, barge-in and resumed reply to ``turns``,
    none straight to the session (serve's gate and drain depend on that)."""
    session, _, renderer, llm = make(
        ["tell me a story", "", "thanks"],
        replies=(LONG_REPLY, "You are welcome."),
        seconds_per_char=0.02,
    )
    async with session:
        turns = Turns(session)
        direct: list[str] = []
        for name in ("send", "say", "interrupt"):
            original = getattr(session, name)

            def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
                direct.append(_name)
                return _original(*args)

            setattr(session, name, spy)
        await session.listen(
            feed(
                speech(0.6),
                pause(1.0),
                _said(renderer, 1),
                speech(0.8),  # noise over the reply: interrupts, then resumes it
                pause(1.0),
                _idle(session, llm, 1),
                speech(0.6),
                pause(1.0),
            ),
            turns=turns,
        )
    kinds = [kind for kind, _ in turns.calls]
    assert kinds == ["send", "interrupt", "say", "send"]
    assert [text for kind, text in turns.calls if kind == "send"] == ["tell me a story", "thanks"]
    assert turns.calls[2][1] == "And here is a second one. And a third."
    assert direct == ["send", "interrupt", "say", "send"]  # only through the target
    assert user_messages(session) == ["tell me a story", "thanks"]


async def test_a_turns_target_that_refuses_a_turn_keeps_listening() -> None:
    class Refusing:
        def __init__(self) -> None:
            self.refused: list[str] = []

        async def send(self, text: str) -> str:
            self.refused.append(text)
            return ""

        async def say(self, text: str) -> str:
            raise AssertionError("nothing to resume")

        async def interrupt(self) -> None:
            raise AssertionError("nothing to interrupt")

    session, _, renderer, llm = make(["hello there", "goodbye"])
    refusing = Refusing()
    async with session:
        rec = Recorder(session)
        await session.listen(feed(speech(0.6), pause(1.0), speech(0.6), pause(1.0)), turns=refusing)
    assert refusing.refused == ["hello there", "goodbye"]
    assert rec.finals() == ["hello there", "goodbye"]
    assert llm.calls == []
    assert renderer.spoken == []
    assert rec.of(VoiceMetrics) == []  # a turn that never ran has no voice figures
