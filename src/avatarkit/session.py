"""AvatarSession: the turn engine.

A turn streams the LLM's reply, cuts it into sentences as it arrives and has the renderer speak
each one, by one of two routes fixed when the session is built:

* **text**: the renderer speaks text itself (``speak_text``); no TTS is started or called.
* **audio**: each sentence goes through the TTS and its audio to ``renderer.speak``; the TTS of
  the next sentences runs while the current one plays (``lookahead``), so speech has no gaps when
  the TTS is faster than real time.

Each turn runs inside the caller's task (``send``/``say``) in its own task group, so no task
outlives the turn, and the engine runs on asyncio and trio alike. Turns run one at a time, in
call order; a newer call supersedes older ones still waiting (barge-in).

Around it, each in its own module: :mod:`avatarkit._spoken` decides how much of a sentence was
said (history and ``SentenceEnded`` hold exactly that), :mod:`avatarkit._lifecycle` starts and
closes the providers, :mod:`avatarkit._cleanup` bounds every close,
:mod:`avatarkit._secrets` keeps the session's secrets out of its events and errors, and
:mod:`avatarkit._handoff` and :mod:`avatarkit._audio_pipe` carry a turn's sentences and audio
with as few objects and loop rounds as they can (a process may hold a thousand sessions).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from avatarkit._audio_pipe import AudioPipe
from avatarkit._cleanup import aclose_stream, maybe_await, name_of
from avatarkit._delivery import Delivery
from avatarkit._handoff import Handoff
from avatarkit._lifecycle import Providers
from avatarkit._secrets import StreamRedactor, declared_secrets, redact_event, redact_spoken
from avatarkit._spoken import AudioRate, Meter, speech_seconds_bound, spoken_prefix
from avatarkit.errors import (
    AvatarKitError,
    CapabilityError,
    ProviderError,
    ProviderTimeout,
    SessionError,
    redact_exception,
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
from avatarkit.providers import (
    LLM,
    TTS,
    AudioChunk,
    Message,
    renderer_capabilities,
    tts_capabilities,
)
from avatarkit.text import SentenceSplitter, clean_for_speech

if TYPE_CHECKING:
    from avatarkit.listening import TurnOptions, Turns

__all__ = ["AvatarSession", "Route", "Timeouts"]

logger = logging.getLogger(__name__)

Route = Literal["text", "audio"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Limits (seconds) that turn a hung provider into an error; ``None`` waits forever.

    ``first_token`` runs from the LLM call to its first non-empty delta; ``tts_first_chunk``
    from a TTS call to its first non-empty chunk. ``speak`` is how long a renderer may go
    without progress: on the audio route it is added to the audio it was given (it may take
    that long to play it) and does not run while the renderer waits for the TTS; on the text
    route it is added to a generous estimate of the sentence's length (characters, CJK and long
    URLs counted). ``interrupt_grace`` bounds ``renderer.interrupt()`` and how long a renderer
    may take to return from speaking after it, before it is cancelled. ``cleanup`` bounds
    closing one LLM/TTS stream or one provider: one that hangs there is left behind (logged)
    so ``interrupt()`` and ``close()`` always return.
    """

    first_token: float | None = None
    tts_first_chunk: float | None = None
    speak: float | None = None
    interrupt_grace: float = 2.0
    cleanup: float = 5.0


@dataclass
class _Sentence:
    index: int
    text: str  # as the LLM wrote it
    speech: str  # cleaned for speech
    audio: AudioPipe | None = None  # audio route: from its TTS task to the speaker
    synthesized: float = 0.0  # audio route: seconds synthesised so far
    total: float | None = None  # audio route: the full audio, once the TTS finished it


@dataclass
class _Turn:
    number: int
    started: float
    scope: anyio.CancelScope  # the whole turn
    producers: anyio.CancelScope  # the LLM stream and TTS requests
    done: anyio.Event
    # The sentences on their way to the speaker (audio route: once their TTS started).
    handoff: Handoff[_Sentence] = field(default_factory=Handoff)
    # Audio route: sentences waiting for a TTS slot (one speaking + `lookahead` synthesising),
    # the producers' task group their TTS tasks start in, and the producer's wait for room.
    waiting: deque[_Sentence] = field(default_factory=deque)
    tts_group: TaskGroup | None = None
    in_flight: int = 0
    room: anyio.Event | None = None
    interrupted: bool = False
    failed: bool = False  # a producer failed: nothing more is begun
    first_token_at: float | None = None
    first_speech_at: float | None = None
    spoken: list[str] = field(default_factory=list)
    sentences: int = 0  # sentences begun
    queued: int = 0  # sentences the producer handed on
    produced: bool = False  # the producer handed on the whole reply
    cut: bool = False  # a sentence ended short of its end

    @property
    def stopping(self) -> bool:
        """No new sentence may begin (interrupted, or a producer failed)."""
        return self.interrupted or self.failed

    @property
    def complete(self) -> bool:
        """Everything the reply held was said in full."""
        return self.produced and not self.cut and self.sentences == self.queued


class _SpeakerGone(Exception):
    """The speaking side of a turn has gone away; its producers stop quietly."""


class _Failed(Exception):
    """Carries a provider failure out of a turn's task group with the stage it happened in."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(stage, error)
        self.stage = stage
        self.error = error


class AvatarSession:
    """A conversation with an avatar.

    Use it as an async context manager (``async with session:``), which starts every provider and
    closes each exactly once, even when cancelled. ``secrets`` are values (API keys, tokens) kept
    out of every error and event the session produces and out of what the avatar is given to
    say (``[redacted]`` stands in), besides the keys its providers declare;
    :func:`avatarkit.load_session` passes the ones the configuration resolved.
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
        secrets: Iterable[object] = (),
        stt: Any | None = None,
        vad: Any | None = None,
        turn: TurnOptions | None = None,
        incremental: bool | None = None,
    ) -> None:
        if lookahead < 0:
            raise ValueError("lookahead must be 0 or more")
        if max_history is not None and max_history < 2:
            raise ValueError("max_history must be at least 2 (one exchange)")
        self.llm = llm
        self.renderer = renderer
        self.route: Route = self._choose_route(renderer, tts, prefer)
        self.tts = tts if self.route == "audio" else None
        can_stream = self.tts is not None and tts_capabilities(self.tts).incremental
        if incremental and not can_stream:
            raise CapabilityError(
                f"incremental: true, but TTS {_name(tts)} has no open_stream()"
                if self.tts is not None
                else "incremental: true needs the audio route and a TTS with open_stream()"
            )
        #: The audio route feeds the TTS one stream per turn, as the LLM writes (the TTS has
        #: ``open_stream``; ``incremental=False`` keeps it on the sentence path).
        self.incremental = can_stream and incremental is not False
        if (
            self.tts is not None
            and not self.incremental
            and not callable(getattr(self.tts, "synthesize", None))
        ):
            raise CapabilityError(f"TTS {_name(tts)} has no synthesize(text); it only streams")
        if tts is not None and self.route == "text":
            logger.info(
                "renderer %s speaks text itself; the TTS given is not used", _name(renderer)
            )
        self.system_prompt = system_prompt
        self.lookahead = lookahead
        self.max_history = max_history
        self.timeouts = timeouts or Timeouts()
        self._secrets = [s for s in secrets if s is not None]
        # Voice input (see avatarkit.listening): used by listen(), started with the session.
        if stt is not None and vad is None and getattr(stt, "streaming", False) is not True:
            raise CapabilityError(
                f"STT {_name(stt)} transcribes whole utterances and needs a VAD to find them"
            )
        self.stt = stt
        self.vad = vad
        self.turn = turn
        self._listening = False
        self.history: list[Message] = []
        if system_prompt:
            self.history.append(Message("system", system_prompt))
        self.state: State = "idle"
        self._subscribers: list[MemoryObjectSendStream[Event]] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._providers = Providers(
            [llm, self.tts, renderer, stt, vad],
            cleanup=self.timeouts.cleanup,
            secrets=self._all_secrets,
        )
        self._closed = False
        self._close_done: anyio.Event | None = None
        self._turn: _Turn | None = None
        self._queue: list[anyio.Event] = []  # one gate per send()/say() not yet ended
        self._turns = 0
        self._tickets = 0  # send()/say() calls so far: the newest one wins a barge-in
        self._last_spoken = ""
        self._renderer_busy = 0  # renderer.interrupt() calls in flight
        self._renderer_quiet: anyio.Event | None = None
        self._audio_rate = AudioRate()  # audio route: how long this TTS's sentences run

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
        """Start every provider the route uses (LLM, TTS on the audio route, renderer).

        Safe to call from several tasks: providers start once and every caller returns when
        they have. ``close()`` during ``start()`` stops it and closes what had started.
        """
        if self._closed:
            raise SessionError("this session is closed; create a new one")
        await self._providers.start(self._prepare)

    @property
    def _started(self) -> bool:
        return self._providers.started

    async def _prepare(self) -> None:
        if self.route == "audio":
            # numpy and soxr (resampling) load here rather than on `import avatarkit`, which
            # text-route users and the CLI never need, nor at the first sentence.
            import avatarkit.audio  # noqa: F401
        configure = getattr(self.renderer, "configure_route", None)
        if callable(configure):
            await maybe_await(configure(self.route))

    async def close(self) -> None:
        """Stop the current turn and close every provider, exactly once, even if cancelled.

        A start in progress is stopped and a turn still running is cancelled and waited for;
        each provider's close is bounded by ``Timeouts.cleanup``, so ``close()`` returns even
        if one hangs.
        """
        if self._closed:
            if self._close_done is not None:
                with anyio.CancelScope(shield=True):
                    await self._close_done.wait()
            return
        self._closed = True
        self._close_done = anyio.Event()
        with anyio.CancelScope(shield=True):
            try:
                await self._providers.stop_starting()
                turn = self._turn
                if turn is not None:
                    turn.interrupted = True
                    turn.scope.cancel()
                    # The turn's own cleanup is bounded (interrupt_grace, cleanup): this wait
                    # only gives up on a provider that ignores cancellation altogether.
                    with anyio.move_on_after(self._turn_cleanup_bound()):
                        await turn.done.wait()
                    if not turn.done.is_set():
                        logger.error("the running turn did not end; closing the providers anyway")
                await self._providers.close()
            finally:
                self._set_state("closed")
                for stream in self._subscribers:
                    stream.close()
                self._subscribers.clear()
                self._close_done.set()

    def _turn_cleanup_bound(self) -> float:
        """How long a cancelled turn may take to end: silencing the renderer, returning from
        speaking, closing the LLM stream and the TTS streams of the look-ahead."""
        t = self.timeouts
        return 2 * t.interrupt_grace + (self.lookahead + 2) * t.cleanup + 1.0

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, max_buffer: int = 1024) -> MemoryObjectReceiveStream[Event]:
        """A stream of every event from now on; iterate it with ``async for``.

        A subscriber that falls ``max_buffer`` events behind misses events (logged) rather than
        slowing the avatar down. The stream ends when the session closes (at once if it is
        closed already).
        """
        send, receive = anyio.create_memory_object_stream[Event](max_buffer)
        if self._closed:
            send.close()
        else:
            self._subscribers.append(send)
        return receive

    def on_event(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` (synchronously) for every event; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _all_secrets(self) -> list[object]:
        found = list(self._secrets)
        for provider in (self.llm, self.tts, self.renderer, self.stt, self.vad):
            if provider is not None:
                found.extend(declared_secrets(provider))
        return found

    def _emit(self, event: Event, *, redacted: bool = False) -> None:
        """Send ``event`` to every listener and subscriber, cleaned of the session's secrets
        (unless ``redacted`` already, as the reply's deltas are: see ``_each_delta``)."""
        if not self._listeners and not self._subscribers:
            return  # nobody to tell: not worth cleaning
        if not redacted:
            event = redact_event(event, self._all_secrets())
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

        A ``send`` while the avatar is still speaking interrupts it first (barge-in); of several
        waiting to barge in, the newest runs and the others end at once, unanswered (their user
        messages stay in history). A provider failure ends the turn with an
        :class:`~avatarkit.events.ErrorEvent` and is raised as an
        :class:`~avatarkit.errors.AvatarKitError`; the session stays usable.
        """
        return await self._run(text, use_llm=True)

    async def say(self, text: str) -> str:
        """Speak ``text`` verbatim, without the LLM; recorded in history as the avatar's words.
        A secret the session knows is said as ``[redacted]``."""
        return await self._run(text, use_llm=False)

    async def listen(self, audio: AsyncIterator[AudioChunk], *, turns: Turns | None = None) -> None:
        """Take the user's turns from their voice: ``audio`` (any rate, mono or stereo).

        Each finished user turn becomes a turn exactly as ``send(text)``; speech while the
        avatar replies interrupts it. Returns when ``audio`` ends and the last reply is over.
        Needs an STT (and a VAD unless the STT streams); see :mod:`avatarkit.listening`.
        ``turns`` (``send``/``say``/``interrupt``; default: this session) is where the heard
        turns and barge-ins go, for an app that queues its turns in front of the session.
        """
        from avatarkit.listening import Listener

        if self.stt is None:
            raise SessionError("listen() needs an STT: give AvatarSession(stt=...) or `stt:`")
        if not self._started:
            raise SessionError("start the session first: use `async with session:`")
        if self._listening:
            raise SessionError("this session is already listening to another audio stream")
        self._listening = True
        try:
            listener = Listener(self, stt=self.stt, vad=self.vad, options=self.turn, turns=turns)
            await listener.run(audio)
        finally:
            self._listening = False

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
                with anyio.move_on_after(self._turn_cleanup_bound()):
                    await turn.done.wait()

    async def _run(self, text: str, *, use_llm: bool) -> str:
        if self._closed:
            raise SessionError("this session is closed")
        if not self._started:
            raise SessionError("start the session first: use `async with session:`")
        # Turns run one at a time in call order: each waits for every earlier call to end
        # (a queue of gates rather than a lock, whose wake-up order trio does not fix).
        self._tickets += 1
        ticket = self._tickets
        earlier, mine = list(self._queue), anyio.Event()
        self._queue.append(mine)
        try:
            if self._turn is not None:
                await self.interrupt()  # barge-in
            for gate in earlier:
                await gate.wait()
            if self._renderer_quiet is not None:
                # A renderer.interrupt() still in flight must not land on this turn's speech.
                await self._renderer_quiet.wait()
            if self._closed:  # closed by another task while this one waited for its turn
                raise SessionError("this session is closed")
            self._turns += 1
            turn = _Turn(
                self._turns,
                time.perf_counter(),
                anyio.CancelScope(),
                anyio.CancelScope(),
                anyio.Event(),
            )
            if use_llm:
                self._append(Message("user", text))
            if ticket != self._tickets:
                # A newer send()/say() barged in while this one waited: it is not answered.
                turn.interrupted = True
                self._finish_turn(turn)
                return ""
            return await self._play(turn, text, use_llm)
        finally:
            self._queue.remove(mine)
            mine.set()

    async def _play(self, turn: _Turn, text: str, use_llm: bool) -> str:
        """Run ``turn`` to its end; returns what was said, raises what failed."""
        self._turn = turn
        failure: _Failed | None = None
        try:
            with turn.scope:
                await self._turn_body(turn, text, use_llm)
        except BaseException as exc:
            inner = _unwrap(exc)
            if isinstance(inner, _Failed):
                failure = inner
            else:
                # Cancelled from outside (or Ctrl-C, or a bug): silence the avatar, keep
                # history of what was said, and let the exception go on.
                turn.interrupted = True
                try:
                    await self._silence_renderer()
                finally:
                    self._finish_turn(turn)
                if inner is not exc and not isinstance(inner, _cancelled_classes()):
                    raise inner from None  # one error, not a group of one
                raise
            await self._silence_renderer()
        if failure is not None:
            error = self._as_avatarkit_error(failure)
            self._emit(ErrorEvent(turn.number, failure.stage, str(error), error))
            self._finish_turn(turn)
            raise error
        self._finish_turn(turn)
        return self._last_spoken

    async def _silence_renderer(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._interrupt_renderer(logging.DEBUG)

    async def _interrupt_renderer(self, level: int) -> None:
        """``renderer.interrupt()``, bounded by ``interrupt_grace``: a renderer that raises or
        hangs there must not hang the caller (the silencing after a failure is shielded). The
        next turn waits until no call is in flight, so a late one cannot cut its speech."""
        if self._renderer_busy == 0:
            self._renderer_quiet = anyio.Event()
        self._renderer_busy += 1
        grace = self.timeouts.interrupt_grace
        try:
            with anyio.move_on_after(grace) as scope:
                try:
                    await self.renderer.interrupt()
                except Exception as exc:
                    message = redact_exception(exc, self._all_secrets())
                    logger.log(
                        level, "renderer %s failed to interrupt: %s", _name(self.renderer), message
                    )
            if scope.cancelled_caught:
                logger.warning(
                    "renderer %s did not return from interrupt() within %.1f s",
                    _name(self.renderer),
                    grace,
                )
        finally:
            self._renderer_busy -= 1
            if self._renderer_busy == 0 and self._renderer_quiet is not None:
                self._renderer_quiet.set()
                self._renderer_quiet = None

    def _finish_turn(self, turn: _Turn) -> None:
        spoken = " ".join(s.strip() for s in turn.spoken if s.strip())
        if spoken:
            self._append(Message("assistant", spoken))
        self._last_spoken = spoken
        if self._turn is turn:
            self._turn = None
        turn.done.set()
        self._emit(
            TurnMetrics(
                turn=turn.number,
                time_to_first_token=_since(turn.started, turn.first_token_at),
                time_to_first_speech=_since(turn.started, turn.first_speech_at),
                duration=time.perf_counter() - turn.started,
                sentences=turn.sentences,
                # An interrupt that came as the reply ended by itself cut nothing.
                interrupted=turn.interrupted and not turn.complete,
            )
        )
        if not self._closed:
            self._set_state("idle")

    def _as_avatarkit_error(self, failure: _Failed) -> AvatarKitError:
        """The error to raise and report for ``failure``: an avatarkit error naming the
        provider, cleaned of every secret the session knows."""
        error = failure.error
        if not isinstance(error, AvatarKitError):
            provider = {"llm": self.llm, "tts": self.tts, "renderer": self.renderer}[failure.stage]
            wrapped = ProviderError(f"{type(error).__name__}: {error}", provider=_name(provider))
            wrapped.__cause__ = error
            error = wrapped
        cleaned = redact_exception(error, self._all_secrets())
        assert isinstance(cleaned, AvatarKitError)
        return cleaned

    async def _turn_body(self, turn: _Turn, text: str, use_llm: bool) -> None:
        if use_llm:
            self._set_state("thinking")
        if self.incremental:
            from avatarkit._incremental_turn import speak_incremental

            await speak_incremental(self, turn, text, use_llm)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._producers, turn, text, use_llm)
            if self.route == "text":
                await self._speak_text_sentences(turn)
            else:
                await self._speak_audio_sentences(turn)

    async def _producers(self, turn: _Turn, text: str, use_llm: bool) -> None:
        """Everything that costs money or CPU ahead of speech: one scope, cancelled by interrupt."""
        try:
            with turn.producers:
                if self.route == "text":
                    # The text route has a single producer: run it here, without a task group
                    # (each costs a scheduling round before the LLM is called).
                    await self._produce(turn, text, use_llm)
                    return
                async with anyio.create_task_group() as tg:
                    turn.tts_group = tg
                    try:
                        await self._produce(turn, text, use_llm)
                        # The rest start their TTS as the speaker frees slots for them.
                        while turn.waiting and not turn.handoff.gone:
                            room = turn.room = anyio.Event()
                            await room.wait()
                    finally:
                        turn.tts_group = None  # no TTS starts once the producer is done
                        turn.waiting.clear()
                        turn.handoff.close()
        finally:
            turn.handoff.close()

    async def _produce(self, turn: _Turn, text: str, use_llm: bool) -> None:
        if use_llm:
            await self._produce_from_llm(turn)
        else:
            await self._produce_from_text(turn, text)

    # -- producing sentences -------------------------------------------------------------------

    async def _produce_from_llm(self, turn: _Turn) -> None:
        splitter = SentenceSplitter()

        async def take(delta: str) -> None:
            queued = turn.queued
            for sentence in splitter.feed(delta):
                self._queue_sentence(turn, sentence)
            if turn.queued != queued:
                # Let the speaker start on it now, even if the LLM has more at hand
                # (a stream that yields without awaiting would otherwise run to the end).
                await anyio.lowlevel.checkpoint()

        try:
            await self._each_delta(turn, take)
            for sentence in splitter.flush():
                self._queue_sentence(turn, sentence)
            turn.produced = True
        except _SpeakerGone:
            return  # the turn is ending (cancelled, interrupted): stop streaming

    async def _each_delta(self, turn: _Turn, take: Callable[[str], Awaitable[None]]) -> None:
        """Stream the LLM's reply into ``take``, one non-empty delta at a time: the first-token
        timeout, ``TextDelta`` events, failures as ``_Failed("llm")``, the stream always closed."""
        limit = self.timeouts.first_token
        deadline = math.inf if limit is None else anyio.current_time() + limit
        stream: object = None
        # A secret the LLM writes is masked before anyone sees or hears it, also when split
        # across deltas: only a tail that could start one waits for the next delta.
        shown = StreamRedactor(self._all_secrets)
        try:
            try:
                stream = self.llm.stream(list(self.history))
                iterator = stream.__aiter__()
            except Exception as exc:  # the call itself failed, before streaming
                turn.failed = True
                raise _Failed("llm", exc) from exc
            while True:
                try:
                    if turn.first_token_at is None:
                        delta = await _next_before(
                            iterator, deadline, limit, self.llm, "first token"
                        )
                    else:
                        delta = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    turn.failed = True
                    raise _Failed("llm", exc) from exc
                if not delta:
                    continue  # an empty delta is not a first token
                if turn.first_token_at is None:
                    turn.first_token_at = time.perf_counter()
                text = shown.feed(delta)
                if text:
                    self._emit(TextDelta(turn.number, text), redacted=True)
                    await take(text)
            text = shown.flush()
            if text:
                self._emit(TextDelta(turn.number, text), redacted=True)
                await take(text)
        finally:
            # Cut short (interrupt, failure): what was held is shown, never spoken.
            text = shown.flush()
            if text:
                self._emit(TextDelta(turn.number, text), redacted=True)
            if stream is not None:
                await aclose_stream(stream, self.timeouts.cleanup, self.llm)

    async def _produce_from_text(self, turn: _Turn, text: str) -> None:
        splitter = SentenceSplitter()
        text = redact_spoken(text, self._all_secrets())
        for sentence in [*splitter.feed(text), *splitter.flush()]:
            try:
                self._queue_sentence(turn, sentence)
            except _SpeakerGone:
                return
        turn.produced = True

    def _queue_sentence(self, turn: _Turn, raw: str) -> None:
        speech = clean_for_speech(raw)
        if not any(ch.isalnum() for ch in speech):
            return  # nothing to say ("**", a lone "?")
        sentence = _Sentence(turn.queued, raw, speech)
        if self.route == "text":
            queued = turn.handoff.put(sentence)
        else:
            queued = not turn.handoff.gone
            if queued:
                turn.waiting.append(sentence)
                self._start_tts(turn)
        if not queued:
            # The speaker already left (the turn was cancelled before this producer got to
            # a checkpoint, e.g. an LLM that streams without awaiting): nobody will say it.
            raise _SpeakerGone
        turn.queued += 1

    # -- speaking: text route -------------------------------------------------------------------

    async def _speak_text_sentences(self, turn: _Turn) -> None:
        try:
            while (sentence := await turn.handoff.get()) is not None:
                if turn.stopping or not await self._begin_sentence(turn, sentence):
                    return
                if turn.first_speech_at is None:
                    turn.first_speech_at = time.perf_counter()
                meter = Meter(sentence.speech, "text")
                limit = self.timeouts.speak
                deadline = math.inf
                if limit is not None:
                    deadline = anyio.current_time() + limit + speech_seconds_bound(sentence.speech)
                try:
                    with anyio.CancelScope(deadline=deadline) as scope:
                        await self._renderer_call(self.renderer.speak_text(sentence.speech))
                    self._check_timeout(scope, meter)
                    meter.returned = True
                finally:
                    self._end_sentence(turn, sentence, meter)
        finally:
            turn.handoff.leave()  # the producer stops: nobody will say what it queues

    # -- speaking: audio route ------------------------------------------------------------------

    def _start_tts(self, turn: _Turn) -> None:
        """Start the TTS of waiting sentences while a slot is free (one sentence speaking and
        ``lookahead`` synthesising), each in the producers' task group, and hand them to the
        speaker. Called when a sentence is queued and when the speaker finishes one."""
        group = turn.tts_group
        while turn.waiting and group is not None and turn.in_flight <= self.lookahead:
            sentence = turn.waiting.popleft()
            sentence.audio = AudioPipe()
            if not turn.handoff.put(sentence):
                turn.waiting.clear()  # the speaker left: the turn is ending
                break
            turn.in_flight += 1
            group.start_soon(self._synthesize, turn, sentence, sentence.audio)
        if turn.room is not None:
            turn.room.set()
            turn.room = None

    async def _speak_audio_sentences(self, turn: _Turn) -> None:
        try:
            while (sentence := await turn.handoff.get()) is not None:
                try:
                    if not turn.stopping:
                        await self._speak_one_audio(turn, sentence)
                finally:
                    _discard(sentence)
                    turn.in_flight -= 1
                    if not turn.stopping:
                        self._start_tts(turn)
        finally:
            # Sentences synthesised but never spoken (interrupt, error); the producer stops.
            for sentence in turn.handoff.leave():
                _discard(sentence)
            self._start_tts(turn)  # wakes a producer waiting for room: there is none now

    async def _synthesize(self, turn: _Turn, sentence: _Sentence, out: AudioPipe) -> None:
        assert self.tts is not None
        limit = self.timeouts.tts_first_chunk
        deadline = math.inf if limit is None else anyio.current_time() + limit
        stream: object = None
        try:
            try:
                stream = self.tts.synthesize(sentence.speech)
                iterator = stream.__aiter__()
            except Exception as exc:  # the call itself failed, before streaming
                turn.failed = True
                raise _Failed("tts", exc) from exc
            while True:
                try:
                    if not sentence.synthesized:
                        chunk = await _next_before(iterator, deadline, limit, self.tts, "audio")
                    else:
                        chunk = await iterator.__anext__()
                    seconds = chunk.duration
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    turn.failed = True
                    raise _Failed("tts", exc) from exc
                sentence.synthesized += seconds
                if not out.put(chunk):
                    return  # the sentence was dropped (interrupt, error): stop the TTS
            sentence.total = sentence.synthesized
            self._audio_rate.learn(sentence.speech, sentence.total)
        finally:
            try:
                if stream is not None and not _finished(stream):
                    await aclose_stream(stream, self.timeouts.cleanup, self.tts)
            finally:
                out.end()  # after the TTS stream closed, as the end of a stream would

    async def _speak_one_audio(self, turn: _Turn, sentence: _Sentence) -> None:
        pipe = sentence.audio
        assert pipe is not None
        if not await self._begin_sentence(turn, sentence):
            pipe.drop()
            return
        from avatarkit.audio import RateConverter  # loaded by start(): a dict lookup here

        meter = Meter(sentence.speech, "audio", expected=self._audio_rate.expected(sentence.speech))
        rate = getattr(self.renderer, "sample_rate", None)
        audio = Delivery(
            pipe,
            meter,
            turn,
            converter=RateConverter(rate) if isinstance(rate, int) else None,
            block=_max_chunk_seconds(self.renderer),
            limit=self.timeouts.speak,
        )
        scope = audio.scope
        try:
            if scope is None:
                await self._renderer_call(self.renderer.speak(audio))
            else:
                with scope:
                    await self._renderer_call(self.renderer.speak(audio))
                self._check_timeout(scope, meter)
            meter.returned = True
        finally:
            await audio.aclose()
            meter.synthesized, meter.total = sentence.synthesized, sentence.total
            self._end_sentence(turn, sentence, meter)

    @staticmethod
    async def _renderer_call(call: Awaitable[None]) -> None:
        try:
            await call
        except _Failed:
            raise  # a failure of the audio the renderer was pulling (incremental route)
        except Exception as exc:
            raise _Failed("renderer", exc) from exc

    def _check_timeout(self, scope: anyio.CancelScope, meter: Meter) -> None:
        if scope.cancelled_caught:
            meter.timed_out = True
            error = ProviderTimeout(
                f"did not finish speaking: no progress for {self.timeouts.speak} s beyond "
                "the utterance's own length",
                provider=_name(self.renderer),
            )
            raise _Failed("renderer", error)

    # -- bookkeeping ---------------------------------------------------------------------------

    async def _begin_sentence(self, turn: _Turn, sentence: _Sentence) -> bool:
        """Caption and announce the sentence; ``False`` if the turn was interrupted meanwhile
        (an async caption gives an interrupt time to arrive), so nothing is said after it."""
        caption = getattr(self.renderer, "caption", None)
        if callable(caption):
            try:
                await maybe_await(caption(sentence.speech))
            except Exception as exc:
                raise _Failed("renderer", exc) from exc
            if turn.stopping:
                return False
        self._announce_sentence(turn, sentence)
        return True

    def _announce_sentence(self, turn: _Turn, sentence: _Sentence) -> None:
        self._set_state("speaking")
        self._emit(SentenceStarted(turn.number, sentence.index, sentence.speech))

    def _spoken_report(self) -> float | None:
        report = getattr(self.renderer, "spoken_fraction", None)
        if not callable(report):
            return None
        try:
            value = report()
            return None if value is None else float(value)
        except Exception as exc:
            logger.warning("renderer %s: spoken_fraction() failed: %s", _name(self.renderer), exc)
            return None

    def _end_sentence(self, turn: _Turn, sentence: _Sentence, meter: Meter) -> None:
        fraction = meter.fraction(interrupted=turn.interrupted, report=self._spoken_report())
        self._record_sentence(turn, sentence, spoken_prefix(sentence.speech, fraction))

    def _record_sentence(self, turn: _Turn, sentence: _Sentence, said: str) -> None:
        """History and ``SentenceEnded``: ``said`` of ``sentence`` was heard."""
        cut = said != sentence.speech
        if said:
            turn.spoken.append(said)
        turn.sentences += 1
        turn.cut = turn.cut or cut
        self._emit(
            SentenceEnded(
                turn.number, sentence.index, sentence.speech, interrupted=cut, spoken=said
            )
        )

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


_name = name_of


async def _next_before(
    iterator: AsyncIterator[Any], deadline: float, limit: float | None, provider: object, what: str
) -> Any:
    """The next item, failing with ProviderTimeout at ``deadline`` (armed until the first
    non-empty item: empty ones do not count)."""
    if limit is None:
        return await iterator.__anext__()
    with anyio.CancelScope(deadline=deadline) as scope:
        return await iterator.__anext__()
    assert scope.cancelled_caught
    raise ProviderTimeout(f"no {what} within {limit} s", provider=_name(provider))


def _finished(stream: object) -> bool:
    """An async generator that ran to its end: closing it would do nothing (and costs two
    cancel scopes per sentence)."""
    return getattr(stream, "ag_frame", True) is None


def _discard(sentence: _Sentence) -> None:
    if sentence.audio is not None:
        sentence.audio.drop()


def _max_chunk_seconds(renderer: object) -> float | None:
    """The renderer's ``max_chunk_seconds``, if it declares a usable one."""
    value = getattr(renderer, "max_chunk_seconds", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _since(start: float, at: float | None) -> float | None:
    return None if at is None else at - start


def _cancelled_classes() -> tuple[type[BaseException], ...]:
    return (anyio.get_cancelled_exc_class(), KeyboardInterrupt, SystemExit)


def _unwrap(exc: BaseException) -> BaseException:
    """The meaningful error inside a task group's ExceptionGroup."""
    cancelled = anyio.get_cancelled_exc_class()
    while isinstance(exc, BaseExceptionGroup):
        failures = [e for e in exc.exceptions if isinstance(_unwrap(e), _Failed)]
        others = [e for e in exc.exceptions if not isinstance(e, cancelled)]
        exc = (failures or others or list(exc.exceptions))[0]
    return exc
