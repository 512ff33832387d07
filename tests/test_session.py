"""The turn engine, driven with the fakes from avatarkit.testing (asyncio and trio)."""

from __future__ import annotations

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from avatarkit import (
    AvatarSession,
    CapabilityError,
    ErrorEvent,
    Message,
    ProviderError,
    ProviderTimeout,
    SentenceStarted,
    SessionError,
    StateChanged,
    TurnMetrics,
)
from avatarkit.events import Event
from avatarkit.session import Timeouts
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTextRenderer, FakeTTS, wait_until

THREE = "First sentence here. Second one follows. Third and last!"


async def drain(events: MemoryObjectReceiveStream[Event]) -> list[Event]:
    async with events:
        return [e async for e in events]


class SpyTextRenderer(FakeTextRenderer):
    """Records whether the LLM had finished streaming when each sentence arrived."""

    def __init__(self, llm: FakeLLM, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.llm = llm
        self.llm_done_at_speak: list[int] = []

    async def speak_text(self, text: str) -> None:
        self.llm_done_at_speak.append(self.llm.completed)
        await super().speak_text(text)


async def test_text_route_never_uses_tts() -> None:
    llm, tts, renderer = FakeLLM([THREE]), FakeTTS(), FakeTextRenderer()
    session = AvatarSession(llm=llm, tts=tts, renderer=renderer)
    assert session.route == "text"
    assert session.tts is None
    async with session:
        reply = await session.send("hi")
    assert renderer.spoken == ["First sentence here.", "Second one follows.", "Third and last!"]
    assert reply == THREE
    assert tts.texts == []
    assert tts.started == 0
    assert tts.closed == 0


async def test_audio_route_speaks_every_sentence_in_order() -> None:
    tts, renderer = FakeTTS(ms_per_char=5), FakeAudioRenderer()
    async with AvatarSession(llm=FakeLLM([THREE]), tts=tts, renderer=renderer) as session:
        assert session.route == "audio"
        await session.send("hi")
    assert tts.texts == ["First sentence here.", "Second one follows.", "Third and last!"]
    assert len(renderer.utterances) == 3
    for text, utterance in zip(tts.texts, renderer.utterances, strict=True):
        assert utterance.duration == pytest.approx(len(text) * 0.005, abs=0.001)
        assert not utterance.interrupted


async def test_first_sentence_is_spoken_before_the_llm_finishes() -> None:
    llm = FakeLLM([THREE], token_delay=0.005)
    renderer = SpyTextRenderer(llm)
    async with AvatarSession(llm=llm, renderer=renderer) as session:
        await session.send("hi")
    assert renderer.llm_done_at_speak[0] == 0  # the LLM was still streaming
    assert llm.completed == 1


async def test_audio_is_resampled_to_the_renderer_rate() -> None:
    tts = FakeTTS(sample_rate=22050, ms_per_char=10)
    renderer = FakeAudioRenderer(sample_rate=24000)
    async with AvatarSession(llm=FakeLLM(["Resample me please."]), tts=tts, renderer=renderer) as s:
        await s.send("x")
    (utterance,) = renderer.utterances
    assert {c.sample_rate for c in utterance.chunks} == {24000}
    assert utterance.duration == pytest.approx(len("Resample me please.") * 0.010, abs=0.002)


async def test_tts_of_the_next_sentence_runs_while_the_current_one_plays() -> None:
    tts = FakeTTS(ms_per_char=2)
    seen: list[int] = []

    class Spy(FakeAudioRenderer):
        async def speak(self, audio):  # type: ignore[no-untyped-def]
            if not seen:
                # Sentence 1 takes none of its audio until sentence 2's synthesis has begun:
                # an engine without look-ahead never begins it, and this wait fails.
                await wait_until(lambda: len(tts.texts) >= 2)
            seen.append(len(tts.texts))
            await super().speak(audio)

    async with AvatarSession(llm=FakeLLM([THREE]), tts=tts, renderer=Spy(), lookahead=1) as s:
        await s.send("go")
    assert seen[0] >= 2  # sentence 2 was already being synthesised during sentence 1
    assert seen == sorted(seen)


async def test_interrupt_stops_llm_and_tts_and_keeps_only_what_was_spoken() -> None:
    second = "Second sentence is long enough to be cut somewhere in the middle."
    tail = " Third never said" + ", and on" * 40 + "."
    llm = FakeLLM(["Hi. " + second + tail], token_delay=0.02)
    tts = FakeTTS(ms_per_char=10, chunk_delay=0.015)  # faster than real time, still running
    renderer = FakeAudioRenderer(realtime=True)
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer) as session:
        reply = ""

        async def talk() -> None:
            nonlocal reply
            reply = await session.send("hi")

        async with anyio.create_task_group() as tg:
            tg.start_soon(talk)
            await wait_until(
                lambda: len(renderer.utterances) >= 2 and len(renderer.utterances[1].chunks) >= 8
            )
            await session.interrupt()
        assert renderer.interrupts == 1
        assert llm.cancelled == 1  # the LLM stream was closed mid-way
        assert llm.completed == 0
        assert tts.cancelled == 1  # the second sentence's synthesis was stopped
        assert len(renderer.utterances) == 2
        assert renderer.utterances[1].interrupted
        # History holds the user message and only what was spoken: "Hi." and part of sentence 2.
        assert session.history[-2] == Message("user", "hi")
        spoken = session.history[-1].content
        assert spoken == reply
        assert spoken.startswith("Hi. Second")
        assert second.startswith(spoken.removeprefix("Hi. "))
        assert len(spoken) < len("Hi. " + second)
        # The session is still usable.
        llm.token_delay = 0
        tts.chunk_delay = 0
        renderer.realtime = False
        assert await session.send("again")


async def test_a_new_send_while_speaking_barges_in() -> None:
    class HalfSaid(FakeTextRenderer):
        """Says half of the first utterance, then holds until interrupted (a clock-driven
        renderer would say more the later a loaded machine runs the barge-in)."""

        async def speak_text(self, text: str) -> None:
            if self.spoken:
                return await super().speak_text(text)
            interrupted = self._new_utterance()
            self.spoken.append(text)
            self.fractions.append(0.5)
            await interrupted.wait()

    llm = FakeLLM([THREE, "Short answer."])
    renderer = HalfSaid()
    async with AvatarSession(llm=llm, renderer=renderer) as session:
        results: list[str] = []

        async def first() -> None:
            results.append(await session.send("one"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await wait_until(lambda: bool(renderer.spoken))
            # Half of "First sentence here." is "First sent": the one whole word is "First".
            results.append(await session.send("two"))
    assert renderer.interrupts == 1
    assert results[1] == "Short answer."
    assert results[0] == "First"
    roles = [m.role for m in session.history]
    assert roles == ["user", "assistant", "user", "assistant"]


async def test_events_tell_the_whole_turn() -> None:
    renderer = FakeTextRenderer()
    async with AvatarSession(llm=FakeLLM([THREE]), renderer=renderer) as session:
        events = session.subscribe()
        await session.send("hi")
    seen = await drain(events)
    states = [e.state for e in seen if isinstance(e, StateChanged)]
    assert states == ["thinking", "speaking", "idle", "closed"]
    starts = [e.text for e in seen if isinstance(e, SentenceStarted)]
    assert starts == renderer.spoken
    deltas = "".join(e.text for e in seen if e.type == "delta")
    assert deltas == THREE
    (metrics,) = [e for e in seen if isinstance(e, TurnMetrics)]
    assert metrics.sentences == 3
    assert metrics.time_to_first_token is not None
    assert metrics.time_to_first_speech is not None
    assert 0 <= metrics.time_to_first_token <= metrics.time_to_first_speech <= metrics.duration
    assert not metrics.interrupted


async def test_say_speaks_verbatim_without_the_llm() -> None:
    llm, renderer = FakeLLM(), FakeTextRenderer()
    async with AvatarSession(llm=llm, renderer=renderer) as session:
        said = await session.say("Welcome! **Bold** words are cleaned.")
    assert llm.calls == []
    assert renderer.spoken == ["Welcome!", "Bold words are cleaned."]
    assert session.history == [Message("assistant", said)]


@pytest.mark.parametrize("after", [0, 3])
async def test_llm_error_ends_the_turn_and_the_session_stays_usable(after: int) -> None:
    llm = FakeLLM([THREE], error=RuntimeError("boom"), error_after=after)
    renderer = FakeTextRenderer()
    async with AvatarSession(llm=llm, renderer=renderer) as session:
        events = session.subscribe()
        with pytest.raises(ProviderError, match="FakeLLM: RuntimeError: boom") as info:
            await session.send("hi")
        assert info.value.provider == "FakeLLM"
        llm.error = None
        assert await session.send("again") == THREE
    errors = [e for e in await drain(events) if isinstance(e, ErrorEvent)]
    assert [(e.stage, e.turn) for e in errors] == [("llm", 1)]


async def test_tts_error_mid_audio_is_reported_as_tts() -> None:
    tts = FakeTTS(error=ProviderError("synth failed", provider="FakeTTS"), error_after=1)
    async with AvatarSession(llm=FakeLLM([THREE]), tts=tts, renderer=FakeAudioRenderer()) as s:
        events = s.subscribe()
        with pytest.raises(ProviderError, match="synth failed"):
            await s.send("hi")
        tts.error = None
        await s.send("again")
    assert [e.stage for e in await drain(events) if isinstance(e, ErrorEvent)] == ["tts"]


async def test_renderer_error_in_speak_is_reported_as_renderer() -> None:
    class Broken(FakeTextRenderer):
        async def speak_text(self, text: str) -> None:
            raise ConnectionError("renderer gone")

    async with AvatarSession(llm=FakeLLM([THREE]), renderer=Broken()) as session:
        events = session.subscribe()
        with pytest.raises(ProviderError, match="renderer gone"):
            await session.send("hi")
    assert [e.stage for e in await drain(events) if isinstance(e, ErrorEvent)] == ["renderer"]


async def test_first_token_timeout_turns_a_hang_into_an_error() -> None:
    llm = FakeLLM([THREE], first_token_delay=30)
    timeouts = Timeouts(first_token=0.05)
    async with AvatarSession(llm=llm, renderer=FakeTextRenderer(), timeouts=timeouts) as session:
        with pytest.raises(ProviderTimeout, match=r"no first token within 0\.05 s"):
            await session.send("hi")
        llm.first_token_delay = 0
        assert await session.send("again") == THREE


async def test_tts_and_speak_timeouts() -> None:
    tts = FakeTTS(first_chunk_delay=30)
    async with AvatarSession(
        llm=FakeLLM([THREE]),
        tts=tts,
        renderer=FakeAudioRenderer(),
        timeouts=Timeouts(tts_first_chunk=0.05),
    ) as session:
        with pytest.raises(ProviderTimeout, match="no audio within"):
            await session.send("hi")
    async with AvatarSession(
        llm=FakeLLM(["Hi."]),
        renderer=FakeTextRenderer(seconds_per_char=100),
        timeouts=Timeouts(speak=0.05),
    ) as session:
        with pytest.raises(ProviderTimeout, match="did not finish speaking"):
            await session.send("hi")


async def test_close_closes_every_provider_once_even_when_cancelled() -> None:
    llm, tts = FakeLLM([THREE], token_delay=0.01), FakeTTS()
    renderer = FakeAudioRenderer(realtime=True)
    session = AvatarSession(llm=llm, tts=tts, renderer=renderer)
    # Cancelled mid-turn, once the renderer is playing (a fixed 50 ms could end before a
    # loaded machine had begun the turn, and there was then nothing to silence).
    with anyio.CancelScope() as scope:
        async with session, anyio.create_task_group() as tg:

            async def cancel_while_speaking() -> None:
                await wait_until(lambda: any(u.chunks for u in renderer.utterances))
                scope.cancel()

            tg.start_soon(cancel_while_speaking)
            await session.send("hi")
    assert scope.cancelled_caught
    await session.close()
    assert (llm.started, tts.started, renderer.started) == (1, 1, 1)
    assert (llm.closed, tts.closed, renderer.closed) == (1, 1, 1)
    assert session.state == "closed"
    assert renderer.interrupts >= 1  # the avatar was silenced
    with pytest.raises(SessionError):
        await session.send("after close")


async def test_close_from_another_task_ends_the_running_turn() -> None:
    renderer = FakeTextRenderer(seconds_per_char=1)
    session = AvatarSession(llm=FakeLLM([THREE]), renderer=renderer)
    await session.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(session.send, "hi")
        await wait_until(lambda: bool(renderer.spoken))
        await session.close()
    assert renderer.closed == 1


async def test_failed_start_closes_what_was_started_and_the_failing_provider() -> None:
    class FailingRenderer(FakeTextRenderer):
        async def start(self) -> None:
            await super().start()
            raise ConnectionError("cannot create avatar session")

    llm, renderer = FakeLLM(), FailingRenderer()
    with pytest.raises(ConnectionError):
        async with AvatarSession(llm=llm, renderer=renderer):
            pass
    assert llm.closed == 1
    assert renderer.closed == 1


async def test_context_manager_providers_are_entered_and_exited() -> None:
    log: list[str] = []

    class CMRenderer(FakeTextRenderer):
        async def __aenter__(self) -> CMRenderer:
            log.append("enter")
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append("exit")

    async with AvatarSession(llm=FakeLLM(), renderer=CMRenderer()) as session:
        await session.send("x")
    assert log == ["enter", "exit"]


async def test_max_history_keeps_the_system_prompt() -> None:
    async with AvatarSession(
        llm=FakeLLM(["Ok."]), renderer=FakeTextRenderer(), system_prompt="Be brief.", max_history=4
    ) as session:
        for i in range(10):
            await session.send(f"message {i}")
    assert session.history[0] == Message("system", "Be brief.")
    assert len(session.history) == 5
    assert session.history[1] == Message("user", "message 8")


def test_routing_rules() -> None:
    class Both(FakeAudioRenderer):
        async def speak_text(self, text: str) -> None:
            pass

    llm, tts = FakeLLM(), FakeTTS()
    assert AvatarSession(llm=llm, renderer=Both()).route == "text"
    assert AvatarSession(llm=llm, renderer=Both(), tts=tts).route == "audio"
    assert AvatarSession(llm=llm, renderer=Both(), tts=tts, prefer="text").route == "text"
    with pytest.raises(CapabilityError, match="prefer: audio needs a TTS"):
        AvatarSession(llm=llm, renderer=Both(), prefer="audio")
    with pytest.raises(CapabilityError, match="speaks audio only and no TTS was given"):
        AvatarSession(llm=llm, renderer=FakeAudioRenderer())
    with pytest.raises(CapabilityError, match="only speaks text"):
        AvatarSession(llm=llm, renderer=FakeTextRenderer(), tts=tts, prefer="audio")
    with pytest.raises(CapabilityError, match="neither"):
        AvatarSession(llm=llm, renderer=object())


async def test_configure_route_and_caption_hooks_are_called() -> None:
    calls: list[tuple[str, str]] = []

    class Hooked(FakeAudioRenderer):
        def configure_route(self, route: str) -> None:
            calls.append(("route", route))

        def caption(self, text: str) -> None:
            calls.append(("caption", text))

    async with AvatarSession(llm=FakeLLM(["One. Two."]), tts=FakeTTS(), renderer=Hooked()) as s:
        await s.send("x")
    assert calls == [("route", "audio"), ("caption", "One."), ("caption", "Two.")]


async def test_markdown_is_not_spoken() -> None:
    reply = (
        "## Title\n**Bold** claim with a [link](https://example.com).\n```py\nprint(1)\n```\nDone."
    )
    renderer = FakeTextRenderer()
    async with AvatarSession(llm=FakeLLM([reply]), renderer=renderer) as session:
        await session.send("x")
    assert renderer.spoken == ["Title", "Bold claim with a link.", "Done."]
