"""AvatarSession: the turn engine.

A turn streams the LLM's reply, cuts it into sentences as it arrives and has the renderer speak
each one, by one of two routes fixed when the session is built:

* **text**: the renderer speaks text itself (``speak_text``); no TTS is started or called.
* **audio**: each sentence goes through the TTS and its audio to ``renderer.speak``; the TTS of
  the next sentences runs while the current one plays (``lookahead``), so speech has no gaps when
  the TTS is faster than real time.

Each turn runs inside the caller's task (``send``/``say``) in its own task group, so no task
outlives the turn, and the engine runs on asyncio and trio alike.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from avatarkit.errors import (
    AvatarKitError,
    CapabilityError,
    ProviderError,
    ProviderTimeout,
    SessionError,
)
from avatarkit.events import (
    ErrorEvent,
    Event,
    SentenceEnded,
    SentenceStarted,
    State,
    StateChanged,
    TextDelta,
    TurnMetrics,
)
from avatarkit.providers import LLM, TTS, AudioChunk, Message, renderer_capabilities

if TYPE_CHECKING:
    from avatarkit.listening import TurnOptions

from avatarkit.text import (
    SentenceSplitter,
    clean_for_speech,
    estimate_speech_seconds,
    spoken_prefix,
)

__all__ = ["AvatarSession", "Route", "Timeouts"]

logger = logging.getLogger(__name__)

Route = Literal["text", "audio"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Limits (seconds) that turn a hung provider into an error; ``None`` waits forever.

    ``speak`` is added to the utterance's own expected length. ``interrupt_grace`` is how long
    a renderer may take to return from speaking after ``interrupt()`` before it is cancelled.
    """

    first_token: float | None = None
    tts_first_chunk: float | None = None
    speak: float | None = None
    interrupt_grace: float = 2.0


@dataclass
class _Sentence:
    index: int
    text: str  # as the LLM wrote it
    speech: str  # cleaned for speech
    audio: MemoryObjectReceiveStream[AudioChunk] | None = None
    frames_total: int = 0  # audio route: frames synthesised so far
    tts_done: bool = False


@dataclass
class _Turn:
    number: int
    started: float
    scope: anyio.CancelScope  # the whole turn
    producers: anyio.CancelScope  # the LLM stream and TTS requests
    done: anyio.Event
    slots: anyio.Semaphore  # audio route: one sentence speaking + `lookahead` synthesising
    interrupted: bool = False
    first_token_at: float | None = None
    first_speech_at: float | None = None
    spoken: list[str] | None = None
    sentences: int = 0


class _SpeakerGone(Exception):
    """The speaking side of a turn has gone away; its producers stop quietly."""


class _Failed(Exception):
    """Carries a provider failure out of a turn's task group with the stage it happened in."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(stage, error)
        self.stage = stage
        self.error = error


def _name(provider: object) -> str:
    return type(provider).__name__


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class AvatarSession:
    """A conversation with an avatar.

    Use it as an async context manager (``async with session:``), which starts every provider and
    closes each exactly once, even when cancelled.
    """

    def __init__(
        self,
        *,
        llm: LLM,
        renderer: Any,
        tts: TTS | None = None,
        system_prompt: str | None = None,
        prefer: Route | None = None,
        lookahead: int = 1,
        max_history: int | None = None,
        timeouts: Timeouts | None = None,
        stt: Any | None = None,
        vad: Any | None = None,
        turn: TurnOptions | None = None,
    ) -> None:
        if lookahead < 0:
            raise ValueError("lookahead must be 0 or more")
        if max_history is not None and max_history < 2:
            raise ValueError("max_history must be at least 2 (one exchange)")
        self.llm = llm
        self.renderer = renderer
        self.route: Route = self._choose_route(renderer, tts, prefer)
        self.tts = tts if self.route == "audio" else None
        if tts is not None and self.route == "text":
            logger.info(
                "renderer %s speaks text itself; the TTS given is not used", _name(renderer)
            )
        self.system_prompt = system_prompt
        self.lookahead = lookahead
        self.max_history = max_history
        self.timeouts = timeouts or Timeouts()
        # Voice input (see avatarkit.listening): used by listen(), started with the session.
        if stt is not None and vad is None and getattr(stt, "streaming", False) is not True:
            raise CapabilityError(
                f"STT {_name(stt)} transcribes whole utterances and needs a VAD to find them"
            )
        self.stt = stt
        self.vad = vad
        self.turn = turn
        self.history: list[Message] = []
        if system_prompt:
            self.history.append(Message("system", system_prompt))
        self.state: State = "idle"
        self._subscribers: list[MemoryObjectSendStream[Event]] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._stack: AsyncExitStack | None = None
        self._started = False
        self._closed = False
        self._close_done: anyio.Event | None = None
        self._turn: _Turn | None = None
        self._turn_lock: anyio.Lock | None = None
        self._turns = 0
        self._last_spoken = ""

    # -- routing -------------------------------------------------------------------------------

    @staticmethod
    def _choose_route(renderer: Any, tts: TTS | None, prefer: Route | None) -> Route:
        caps = renderer_capabilities(renderer)
        name = _name(renderer)
        if not caps.text and not caps.audio:
            raise CapabilityError(
                f"renderer {name} has neither an async speak_text(text) nor an async "
                "speak(audio) method, so it cannot say anything"
            )
        if prefer not in (None, "text", "audio"):
            raise CapabilityError(f"prefer must be 'text' or 'audio', not {prefer!r}")
        if prefer == "text" and not caps.text:
            raise CapabilityError(f"prefer: text, but renderer {name} only speaks audio")
        if prefer == "audio" and not caps.audio:
            raise CapabilityError(f"prefer: audio, but renderer {name} only speaks text")
        if prefer == "audio" or (
            prefer is None and caps.audio and (tts is not None or not caps.text)
        ):
            if tts is None:
                raise CapabilityError(
                    f"renderer {name} speaks audio only and no TTS was given; add a TTS"
                    if not caps.text
                    else f"prefer: audio needs a TTS, and renderer {name} was given none"
                )
            return "audio"
        return "text"

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> AvatarSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every provider the route uses (LLM, TTS on the audio route, renderer)."""
        if self._closed:
            raise SessionError("this session is closed; create a new one")
        if self._started:
            return
        self._turn_lock = anyio.Lock()
        if self.route == "audio":
            # numpy and soxr (resampling) load here rather than on `import avatarkit`, which
            # text-route users and the CLI never need, and not at the first sentence either.
            import avatarkit.audio  # noqa: F401
        configure = getattr(self.renderer, "configure_route", None)
        if callable(configure):
            await _maybe_await(configure(self.route))
        stack = AsyncExitStack()
        try:
            for provider in (self.llm, self.tts, self.renderer, self.stt, self.vad):
                if provider is not None:
                    await self._start_provider(stack, provider)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._stack = stack
        self._started = True

    @staticmethod
    async def _start_provider(stack: AsyncExitStack, provider: Any) -> None:
        if hasattr(provider, "__aenter__") and hasattr(provider, "__aexit__"):
            await stack.enter_async_context(provider)
            return
        close = getattr(provider, "close", None)
        if close is not None:
            # Registered before start: a provider whose start fails is closed too (close is
            # idempotent by contract), so a half-created paid session is never left running.
            stack.push_async_callback(_close_quietly, provider, close)
        start = getattr(provider, "start", None)
        if start is not None:
            await _maybe_await(start())

    async def close(self) -> None:
        """Stop the current turn and close every provider, exactly once, even if cancelled."""
        if self._closed:
            if self._close_done is not None:
                with anyio.CancelScope(shield=True):
                    await self._close_done.wait()
            return
        self._closed = True
        self._close_done = anyio.Event()
        with anyio.CancelScope(shield=True):
            try:
                turn = self._turn
                if turn is not None:
                    turn.interrupted = True
                    turn.scope.cancel()
                    with anyio.move_on_after(5):
                        await turn.done.wait()
                if self._stack is not None:
                    await self._stack.aclose()
            finally:
                self._set_state("closed")
                for stream in self._subscribers:
                    stream.close()
                self._subscribers.clear()
                self._close_done.set()

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, max_buffer: int = 1024) -> MemoryObjectReceiveStream[Event]:
        """A stream of every event from now on; iterate it with ``async for``.

        A subscriber that falls ``max_buffer`` events behind misses events (logged) rather than
        slowing the avatar down. The stream ends when the session closes.
        """
        send, receive = anyio.create_memory_object_stream[Event](max_buffer)
        self._subscribers.append(send)
        return receive

    def on_event(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` (synchronously) for every event; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed", listener)
        if not self._subscribers:
            return
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                logger.warning(
                    "an event subscriber is %d events behind; dropping %s",
                    stream.statistics().max_buffer_size,
                    event.type,
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                stream.close()  # unclosed, it raises ResourceWarning when collected
                self._subscribers.remove(stream)

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self._emit(StateChanged(state))

    # -- turns ---------------------------------------------------------------------------------

    async def send(self, text: str) -> str:
        """Run one turn: the user says ``text``; returns what the avatar actually said.

        A ``send`` while the avatar is still speaking interrupts it first (barge-in). A provider
        failure ends the turn with an :class:`~avatarkit.events.ErrorEvent` and is raised as an
        :class:`~avatarkit.errors.AvatarKitError`; the session stays usable.
        """
        return await self._run(text, use_llm=True)

    async def say(self, text: str) -> str:
        """Speak ``text`` verbatim, without the LLM; recorded in history as the avatar's words."""
        return await self._run(text, use_llm=False)

    async def listen(self, audio: AsyncIterator[AudioChunk]) -> None:
        """Take the user's turns from their voice: ``audio`` (any rate, mono or stereo).

        Each finished user turn becomes a turn exactly as ``send(text)``; speech while the
        avatar replies interrupts it. Returns when ``audio`` ends and the last reply is over.
        Needs an STT (and a VAD unless the STT streams); see :mod:`avatarkit.listening`.
        """
        from avatarkit.listening import Listener

        if self.stt is None:
            raise SessionError("listen() needs an STT: give AvatarSession(stt=...) or `stt:`")
        if not self._started:
            raise SessionError("start the session first: use `async with session:`")
        await Listener(self, stt=self.stt, vad=self.vad, options=self.turn).run(audio)

    async def interrupt(self) -> None:
        """Stop the current reply now: cancel the LLM stream and pending TTS, silence the
        renderer. History keeps only what was spoken."""
        turn = self._turn
        if turn is None or turn.done.is_set():
            return
        turn.interrupted = True
        turn.producers.cancel()
        await self._interrupt_renderer(logging.WARNING)
        with anyio.CancelScope(shield=True):
            # speak()/speak_text() return by themselves once interrupted; one that does not is
            # cancelled after a grace period so a misbehaving renderer cannot hang the session.
            with anyio.move_on_after(self.timeouts.interrupt_grace):
                await turn.done.wait()
            if not turn.done.is_set():
                logger.warning(
                    "renderer %s did not return from speaking %.1f s after interrupt()",
                    _name(self.renderer),
                    self.timeouts.interrupt_grace,
                )
                turn.scope.cancel()
                await turn.done.wait()

    async def _run(self, text: str, *, use_llm: bool) -> str:
        if self._closed:
            raise SessionError("this session is closed")
        if not self._started or self._turn_lock is None:
            raise SessionError("start the session first: use `async with session:`")
        if self._turn is not None:
            await self.interrupt()  # barge-in
        async with self._turn_lock:
            if self._closed:  # closed by another task while this one waited for its turn
                raise SessionError("this session is closed")
            self._turns += 1
            turn = _Turn(
                self._turns,
                time.perf_counter(),
                anyio.CancelScope(),
                anyio.CancelScope(),
                anyio.Event(),
                anyio.Semaphore(self.lookahead + 1),
                spoken=[],
            )
            self._turn = turn
            failure: _Failed | None = None
            try:
                if use_llm:
                    self._append(Message("user", text))
                with turn.scope:
                    await self._turn_body(turn, text, use_llm)
            except BaseException as exc:
                inner = _unwrap(exc)
                if not isinstance(inner, _Failed):
                    # Cancelled from outside (or Ctrl-C): silence the avatar, keep history.
                    turn.interrupted = True
                    await self._silence_renderer()
                    raise
                failure = inner
                await self._silence_renderer()
            finally:
                self._finish_turn(turn, cancelled=failure is None and sys.exc_info()[0] is not None)
            spoken = self._last_spoken
            if failure is not None:
                error = _as_avatarkit_error(failure, self)
                self._emit(ErrorEvent(turn.number, failure.stage, str(error), error))
                raise error from failure.error
            return spoken

    async def _silence_renderer(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._interrupt_renderer(logging.DEBUG)

    async def _interrupt_renderer(self, level: int) -> None:
        """``renderer.interrupt()``, bounded by ``interrupt_grace``: a renderer that raises or
        hangs there must not hang the caller (the silencing after a failure is shielded)."""
        grace = self.timeouts.interrupt_grace
        with anyio.move_on_after(grace) as scope:
            try:
                await self.renderer.interrupt()
            except Exception as exc:
                logger.log(level, "renderer %s failed to interrupt: %s", _name(self.renderer), exc)
        if scope.cancelled_caught:
            logger.warning(
                "renderer %s did not return from interrupt() within %.1f s",
                _name(self.renderer),
                grace,
            )

    def _finish_turn(self, turn: _Turn, *, cancelled: bool) -> None:
        spoken = " ".join(s.strip() for s in turn.spoken or [] if s.strip())
        if spoken:
            self._append(Message("assistant", spoken))
        self._last_spoken = spoken
        self._turn = None
        turn.done.set()
        if not cancelled:
            self._emit(
                TurnMetrics(
                    turn=turn.number,
                    time_to_first_token=_since(turn.started, turn.first_token_at),
                    time_to_first_speech=_since(turn.started, turn.first_speech_at),
                    duration=time.perf_counter() - turn.started,
                    sentences=turn.sentences,
                    interrupted=turn.interrupted,
                )
            )
        if not self._closed:
            self._set_state("idle")

    async def _turn_body(self, turn: _Turn, text: str, use_llm: bool) -> None:
        send, receive = anyio.create_memory_object_stream[_Sentence](math.inf)
        if use_llm:
            self._set_state("thinking")
        async with anyio.create_task_group() as tg:
            if self.route == "text":
                tg.start_soon(self._producers, turn, text, use_llm, send, None)
                await self._speak_text_sentences(turn, receive)
            else:
                ready_send, ready_receive = anyio.create_memory_object_stream[_Sentence](math.inf)
                tg.start_soon(self._producers, turn, text, use_llm, send, (receive, ready_send))
                await self._speak_audio_sentences(turn, ready_receive)

    async def _producers(
        self,
        turn: _Turn,
        text: str,
        use_llm: bool,
        sentences: MemoryObjectSendStream[_Sentence],
        audio: tuple[MemoryObjectReceiveStream[_Sentence], MemoryObjectSendStream[_Sentence]]
        | None,
    ) -> None:
        """Everything that costs money or CPU ahead of speech: one scope, cancelled by interrupt."""
        with turn.producers:
            if audio is None:
                # The text route has a single producer: run it here, without a task group and
                # a task of its own (each costs a scheduling round before the LLM is called).
                await self._produce(turn, text, use_llm, sentences)
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._schedule_tts, turn, *audio, tg)
                await self._produce(turn, text, use_llm, sentences)

    async def _produce(
        self, turn: _Turn, text: str, use_llm: bool, out: MemoryObjectSendStream[_Sentence]
    ) -> None:
        if use_llm:
            await self._produce_from_llm(turn, out)
        else:
            await self._produce_from_text(text, out)

    # -- producing sentences -------------------------------------------------------------------

    async def _produce_from_llm(self, turn: _Turn, out: MemoryObjectSendStream[_Sentence]) -> None:
        splitter = SentenceSplitter()
        index = 0
        async with out:
            stream = self.llm.stream(list(self.history))
            try:
                iterator = stream.__aiter__()
                while True:
                    try:
                        if turn.first_token_at is None and self.timeouts.first_token is not None:
                            delta = await _next_within(
                                iterator, self.timeouts.first_token, self.llm, "first token"
                            )
                        else:
                            delta = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        raise _Failed("llm", exc) from exc
                    if turn.first_token_at is None:
                        turn.first_token_at = time.perf_counter()
                    if not delta:
                        continue
                    self._emit(TextDelta(turn.number, delta))
                    queued = index
                    for sentence in splitter.feed(delta):
                        index = self._queue_sentence(out, index, sentence)
                    if index != queued:
                        # Let the speaker start on it now, even if the LLM has more at hand
                        # (a stream that yields without awaiting would otherwise run to the end).
                        await anyio.lowlevel.checkpoint()
                for sentence in splitter.flush():
                    index = self._queue_sentence(out, index, sentence)
            except _SpeakerGone:
                return  # the turn is ending (cancelled, interrupted): stop streaming
            finally:
                await _aclose(stream)

    async def _produce_from_text(self, text: str, out: MemoryObjectSendStream[_Sentence]) -> None:
        splitter = SentenceSplitter()
        index = 0
        async with out:
            for sentence in [*splitter.feed(text), *splitter.flush()]:
                try:
                    index = self._queue_sentence(out, index, sentence)
                except _SpeakerGone:
                    return

    @staticmethod
    def _queue_sentence(out: MemoryObjectSendStream[_Sentence], index: int, raw: str) -> int:
        speech = clean_for_speech(raw)
        if not any(ch.isalnum() for ch in speech):
            return index  # nothing to say ("**", a lone "?")
        try:
            out.send_nowait(_Sentence(index, raw, speech))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The speaker already left (the turn was cancelled before this producer got to
            # a checkpoint, e.g. an LLM that streams without awaiting): nobody will say it.
            raise _SpeakerGone from None
        return index + 1

    # -- speaking: text route -------------------------------------------------------------------

    async def _speak_text_sentences(
        self, turn: _Turn, sentences: MemoryObjectReceiveStream[_Sentence]
    ) -> None:
        async with sentences:
            async for sentence in sentences:
                if turn.interrupted:
                    return
                await self._begin_sentence(turn, sentence)
                if turn.first_speech_at is None:
                    turn.first_speech_at = time.perf_counter()
                expected = estimate_speech_seconds(sentence.speech)
                started = time.perf_counter()
                try:
                    await self._bounded_speak(self.renderer.speak_text(sentence.speech), expected)
                finally:
                    self._end_sentence(turn, sentence, _elapsed_fraction(turn, started, expected))

    # -- speaking: audio route ------------------------------------------------------------------

    async def _schedule_tts(
        self,
        turn: _Turn,
        sentences: MemoryObjectReceiveStream[_Sentence],
        ready: MemoryObjectSendStream[_Sentence],
        tg: TaskGroup,
    ) -> None:
        async with sentences, ready:
            async for sentence in sentences:
                await turn.slots.acquire()
                audio_send, sentence.audio = anyio.create_memory_object_stream[AudioChunk](math.inf)
                try:
                    ready.send_nowait(sentence)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    audio_send.close()
                    _discard(sentence)
                    return  # the speaker left: the turn is ending
                tg.start_soon(self._synthesize, sentence, audio_send)

    async def _speak_audio_sentences(
        self, turn: _Turn, ready: MemoryObjectReceiveStream[_Sentence]
    ) -> None:
        async with ready:
            try:
                async for sentence in ready:
                    try:
                        if not turn.interrupted:
                            await self._speak_one_audio(turn, sentence)
                    finally:
                        _discard(sentence)
                        turn.slots.release()
            finally:
                while True:  # sentences synthesised but never spoken (interrupt, error)
                    try:
                        _discard(ready.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                        break

    async def _synthesize(
        self, sentence: _Sentence, out: MemoryObjectSendStream[AudioChunk]
    ) -> None:
        assert self.tts is not None
        async with out:
            stream = self.tts.synthesize(sentence.speech)
            try:
                iterator = stream.__aiter__()
                limit = self.timeouts.tts_first_chunk
                while True:
                    try:
                        if limit is not None and not sentence.frames_total:
                            chunk = await _next_within(iterator, limit, self.tts, "audio")
                        else:
                            chunk = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        raise _Failed("tts", exc) from exc
                    sentence.frames_total += chunk.frames
                    try:
                        out.send_nowait(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the sentence was dropped (interrupt, error): stop the TTS
                sentence.tts_done = True
            finally:
                await _aclose(stream)

    async def _speak_one_audio(self, turn: _Turn, sentence: _Sentence) -> None:
        assert sentence.audio is not None
        played = 0
        source = sentence.audio

        async def pull() -> AsyncIterator[AudioChunk]:
            nonlocal played
            async with source:
                async for chunk in source:
                    if turn.first_speech_at is None:
                        turn.first_speech_at = time.perf_counter()
                    played += chunk.frames
                    yield chunk

        from avatarkit.audio import resample_stream  # loaded by start(): a dict lookup here

        rate = getattr(self.renderer, "sample_rate", None)
        audio = resample_stream(pull(), rate if isinstance(rate, int) else None)
        await self._begin_sentence(turn, sentence)
        try:
            await self._bounded_speak(
                self.renderer.speak(audio), estimate_speech_seconds(sentence.speech)
            )
        finally:
            await _aclose(audio)
            fraction = 1.0
            if turn.interrupted:
                fraction = played / sentence.frames_total if sentence.frames_total else 0.0
            self._end_sentence(turn, sentence, fraction)

    async def _bounded_speak(self, call: Awaitable[None], expected: float) -> None:
        limit = self.timeouts.speak
        try:
            if limit is None:
                await call
                return
            try:
                with anyio.fail_after(limit + expected):
                    await call
            except TimeoutError:
                raise ProviderTimeout(
                    f"did not finish speaking within {limit + expected:.1f} s",
                    provider=_name(self.renderer),
                ) from None
        except Exception as exc:
            raise _Failed("renderer", exc) from exc

    # -- bookkeeping ---------------------------------------------------------------------------

    async def _begin_sentence(self, turn: _Turn, sentence: _Sentence) -> None:
        caption = getattr(self.renderer, "caption", None)
        if callable(caption):
            try:
                await _maybe_await(caption(sentence.speech))
            except Exception as exc:
                raise _Failed("renderer", exc) from exc
        self._set_state("speaking")
        self._emit(SentenceStarted(turn.number, sentence.index, sentence.speech))

    def _end_sentence(self, turn: _Turn, sentence: _Sentence, fraction: float) -> None:
        assert turn.spoken is not None
        cut = fraction < 1.0
        said = spoken_prefix(sentence.speech, fraction) if cut else sentence.speech
        if said:
            turn.spoken.append(said)
        turn.sentences += 1
        self._emit(SentenceEnded(turn.number, sentence.index, sentence.speech, interrupted=cut))

    def _append(self, message: Message) -> None:
        self.history.append(message)
        if self.max_history is None:
            return
        system = [m for m in self.history[:1] if m.role == "system"]
        rest = self.history[len(system) :]
        if len(rest) > self.max_history:
            rest = rest[len(rest) - self.max_history :]
            while rest and rest[0].role == "assistant":
                rest = rest[1:]  # start at a user message
            self.history[:] = system + rest


async def _next_within(
    iterator: AsyncIterator[Any], seconds: float, provider: object, what: str
) -> Any:
    try:
        with anyio.fail_after(seconds):
            return await iterator.__anext__()
    except TimeoutError:
        raise ProviderTimeout(f"no {what} within {seconds} s", provider=_name(provider)) from None


async def _aclose(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            try:
                await aclose()
            except Exception as exc:
                logger.debug("closing stream %r failed: %s", stream, exc)


def _discard(sentence: _Sentence) -> None:
    if sentence.audio is not None:
        sentence.audio.close()


def _elapsed_fraction(turn: _Turn, started: float, expected: float) -> float:
    """How much of an utterance of ``expected`` seconds was said when the turn stopped."""
    if not turn.interrupted:
        return 1.0
    return (time.perf_counter() - started) / (expected or 1.0)


def _since(start: float, at: float | None) -> float | None:
    return None if at is None else at - start


async def _close_quietly(provider: object, close: Callable[[], Any]) -> None:
    try:
        await _maybe_await(close())
    except Exception:
        logger.exception("closing %s failed", _name(provider))


def _unwrap(exc: BaseException) -> BaseException:
    """The meaningful error inside a task group's ExceptionGroup."""
    cancelled = anyio.get_cancelled_exc_class()
    while isinstance(exc, BaseExceptionGroup):
        failures = [e for e in exc.exceptions if isinstance(_unwrap(e), _Failed)]
        others = [e for e in exc.exceptions if not isinstance(e, cancelled)]
        exc = (failures or others or list(exc.exceptions))[0]
    return exc


def _as_avatarkit_error(failure: _Failed, session: AvatarSession) -> AvatarKitError:
    error = failure.error
    if isinstance(error, AvatarKitError):
        return error
    provider = {"llm": session.llm, "tts": session.tts, "renderer": session.renderer}[failure.stage]
    return ProviderError(f"{type(error).__name__}: {error}", provider=_name(provider))
