"""The listening side of a session: the user's audio in, user turns and barge-in out.

Frames → mono at each provider's rate → VAD (speech start/end) and STT (transcripts) → end of
turn → ``session.send(text)``; speech while the avatar is busy → ``session.interrupt()``.

It talks to :class:`~avatarkit.AvatarSession` only through its public turn API (``send``,
``say``, ``interrupt``, ``state``) and its events, so it can be read and tested on its own.

One task decides everything (:meth:`Listener._decide`): every input — a clock tick, a VAD event,
a transcript — reaches it through one queue, in order, so the turn logic has no races. Its
clock is the audio the VAD (else the streaming STT) has *consumed*, not the wall clock, so a
file fed faster than real time takes the same turns as one played in real time.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict, Field

from avatarkit.errors import (
    AvatarKitError,
    ProviderError,
    SessionError,
    redact,
    redact_exception,
)
from avatarkit.events import (
    ErrorEvent,
    Event,
    SentenceEnded,
    StateChanged,
    TextDelta,
    TurnMetrics,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
    VoiceMetrics,
)
from avatarkit.providers import (
    AudioChunk,
    SpeechEvent,
    Transcript,
    stt_sample_rate,
    stt_streams,
    vad_sample_rate,
)

if TYPE_CHECKING:
    from avatarkit.audio import Resampler
    from avatarkit.session import AvatarSession

__all__ = ["Listener", "TurnOptions", "Turns"]

logger = logging.getLogger(__name__)

_TAIL = 0.1  # seconds of audio after the end of speech still given to a whole-utterance STT


class TurnOptions(BaseModel):
    """When a user turn ends and when the user's speech interrupts the avatar.

    The YAML ``turn:`` section; every field has a default that suits a live conversation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    end_silence: float = Field(0.6, ge=0.0, le=10.0)
    """Seconds of silence after the user's speech before their turn ends (the hangover).
    Speech that resumes within it continues the same turn."""

    interruptions: bool = True
    """Whether the user's speech interrupts the avatar while it thinks or speaks."""

    min_interruption_speech: float = Field(0.5, ge=0.0, le=10.0)
    """Seconds of speech before it counts as an interruption; shorter sounds (a cough,
    "mm-hm") are ignored while the avatar speaks."""

    min_interruption_words: int = Field(0, ge=0, le=50)
    """Words the STT must have heard before speech counts as an interruption (0: any)."""

    false_interruption: Literal["resume", "drop"] = "resume"
    """What to do when an interruption turns out to have no words (noise): ``resume`` says
    the rest of the cut reply (as written so far), ``drop`` leaves it cut."""

    final_timeout: float = Field(2.0, gt=0.0, le=30.0)
    """A streaming STT that gives no final within this many seconds of audio after speech
    ended is taken to have heard nothing."""

    preroll: float = Field(0.2, ge=0.0, le=2.0)
    """Seconds of audio before the detected start of speech given to a whole-utterance STT
    (VADs start a little late; the first syllable must not be cut)."""

    max_utterance: float = Field(28.0, ge=1.0, le=600.0)
    """A whole-utterance STT gets at most this many seconds per call; longer speech is cut
    into several calls (Whisper reads 30 s windows)."""


# -- messages to the deciding task ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tick:
    at: float  # the clock: seconds of audio consumed by the VAD (else the streaming STT)


@dataclass(frozen=True, slots=True)
class _Speech:
    event: SpeechEvent


@dataclass(frozen=True, slots=True)
class _Heard:
    transcript: Transcript
    utterance: int | None  # whole-utterance STT: which utterance; streaming: None


@dataclass(frozen=True, slots=True)
class _UtteranceDone:
    utterance: int


@dataclass(frozen=True, slots=True)
class _SourceDone:
    what: Literal["vad", "stt"]


@dataclass(frozen=True, slots=True)
class _Failure:
    stage: Literal["stt", "vad", "audio"]
    error: AvatarKitError
    fatal: bool


@dataclass(frozen=True, slots=True)
class _SessionClosed:
    pass


_Message = _Tick | _Speech | _Heard | _UtteranceDone | _SourceDone | _Failure | _SessionClosed


# -- state ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Utterance:
    id: int
    start: float
    end: float | None = None
    while_busy: bool = False
    qualified: bool = False  # counts (as an interruption, or the avatar was idle)
    finals: list[str] = field(default_factory=list)
    interim: str = ""
    pending: bool = True  # its final text may still come
    interrupted_reply: int | None = None  # the reply (turn number) it interrupted
    stream: MemoryObjectSendStream[AudioChunk] | None = None
    closed: bool = False  # its STT call has all its audio
    sent_until: float = 0.0  # audio given to its STT call so far
    ended_wall: float | None = None

    def words(self) -> int:
        return len(" ".join([*self.finals, self.interim]).split())

    def text(self) -> str:
        return " ".join(t.strip() for t in self.finals if t.strip())


@dataclass
class _VoiceTurn:
    """Timestamps (wall clock) of one spoken turn, for :class:`VoiceMetrics`."""

    speech_ended: float | None
    final: float
    send_called: float = 0.0
    turn: int | None = None
    after_turn: int = 0


class _Tape:
    """Recent audio at the STT's rate, addressable by time, so an utterance can be cut out
    exactly (from a little before the VAD heard it start to where it ended)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.base = 0  # sample index of data[0]
        self.data = bytearray()

    @property
    def end(self) -> float:
        return (self.base + len(self.data) // 2) / self.rate

    def append(self, pcm: bytes) -> None:
        self.data += pcm

    def slice(self, t0: float, t1: float) -> bytes:
        i0 = max(self.base, round(t0 * self.rate)) - self.base
        i1 = min(self.base + len(self.data) // 2, round(t1 * self.rate)) - self.base
        if i1 <= i0:
            return b""
        return bytes(self.data[2 * i0 : 2 * i1])

    def trim(self, before: float) -> None:
        cut = round(before * self.rate) - self.base
        if cut > 0:
            cut = min(cut, len(self.data) // 2)
            del self.data[: 2 * cut]
            self.base += cut


class _Converter:
    """Any rate and channel count in, mono PCM16 at ``rate`` out (soxr, stateful)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: Resampler | None = None

    def __call__(self, chunk: AudioChunk) -> bytes:
        from avatarkit.audio import Resampler, to_mono

        mono = to_mono(chunk)
        if mono.sample_rate == self.rate:
            return mono.data
        if self._resampler is None or self._resampler.in_rate != mono.sample_rate:
            self._resampler = Resampler(mono.sample_rate, self.rate)
        return self._resampler.process(mono).data

    def flush(self) -> bytes:
        return self._resampler.flush().data if self._resampler is not None else b""


class _ReplyTracker:
    """Follows the session's events to know what the avatar wrote and said in each turn,
    so a reply cut by a false interruption can be resumed."""

    def __init__(self) -> None:
        self.written: dict[int, list[str]] = {}
        self.finished: dict[int, set[int]] = {}  # sentence indexes spoken to the end
        self.last_turn = 0

    def __call__(self, event: Event) -> None:
        turn = getattr(event, "turn", None)
        if isinstance(turn, int) and not isinstance(event, ErrorEvent):
            self.last_turn = max(self.last_turn, turn)
        if isinstance(event, TextDelta):
            self.written.setdefault(event.turn, []).append(event.text)
        elif isinstance(event, SentenceEnded) and not event.interrupted:
            self.finished.setdefault(event.turn, set()).add(event.index)
        if len(self.written) > 8:  # only recent turns can be resumed
            for turn in sorted(self.written)[:-8]:
                self.written.pop(turn, None)
                self.finished.pop(turn, None)

    def unsaid(self, turn: int) -> str:
        """The sentences of ``turn``'s reply from the first one not spoken to the end."""
        from avatarkit.text import SentenceSplitter, clean_for_speech

        splitter = SentenceSplitter()
        text = "".join(self.written.get(turn, []))
        sentences = [clean_for_speech(s) for s in [*splitter.feed(text), *splitter.flush()]]
        sentences = [s for s in sentences if any(ch.isalnum() for ch in s)]
        done = self.finished.get(turn, set())
        first = next((i for i in range(len(sentences)) if i not in done), len(sentences))
        return " ".join(sentences[first:])


def _provider_error(exc: BaseException, provider: object, stage: str) -> AvatarKitError:
    if isinstance(exc, AvatarKitError):
        return exc
    return ProviderError(
        f"{stage} failed: {type(exc).__name__}: {exc}", provider=type(provider).__name__
    )


class Turns(Protocol):
    """Where a listener's turns go: the session itself (the default), or something in front of
    it that runs them in its own order, such as ``avatarkit serve``'s per-page turn queue."""

    async def send(self, text: str) -> str: ...

    async def say(self, text: str) -> str: ...

    async def interrupt(self) -> None: ...


class Listener:
    """Turns one stream of the user's audio into turns of ``session``.

    Built by :meth:`AvatarSession.listen`; one per call. ``stt`` is required; ``vad`` is
    required unless the STT streams (it may then report speech itself). ``turns`` (default:
    the session) takes the turns heard, the resumed replies and the barge-ins; the listener
    still reads the session's state and events and emits its events on the session.
    """

    def __init__(
        self,
        session: AvatarSession,
        *,
        stt: Any,
        vad: Any | None,
        options: TurnOptions | None = None,
        turns: Turns | None = None,
    ) -> None:
        self.session = session
        #: what the heard turns, resumed replies and barge-ins are handed to
        self.turns: Turns = turns if turns is not None else session
        self.stt = stt
        self.vad = vad
        self.options = options or TurnOptions()
        self.streaming = stt_streams(stt)
        if vad is None and not self.streaming:
            raise SessionError(
                f"STT {type(stt).__name__} transcribes whole utterances, so it needs a VAD to "
                "cut the audio into utterances: add a vad"
            )
        self.stt_rate = stt_sample_rate(stt)
        self.vad_rate = vad_sample_rate(vad) if vad is not None else None
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[_Message](math.inf)
        self._tape = _Tape(self.stt_rate)
        self._open: list[_Utterance] = []  # the turn being heard
        self._closed: deque[list[_Utterance]] = deque()  # turns waiting for their words
        self._current: _Utterance | None = None  # the user is speaking this one now
        self._last: _Utterance | None = None  # the latest one
        self._last_interrupted = -1  # the reply (turn number) last interrupted
        self._next_id = 0
        self._clock = 0.0
        self._speaking = False
        self._last_speech_end: float | None = None
        self._end_of_turn_hint = False
        self._last_final_end = -1.0
        self._vad_done = vad is None
        self._stt_done = not self.streaming
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=4096)  # (audio end, wall)
        self._input_position = 0.0
        self._replies = _ReplyTracker()
        self._voice_turns: list[_VoiceTurn] = []
        self._utterance_queue: MemoryObjectSendStream[_Utterance] | None = None
        self._sends: TaskGroup | None = None
        self._fatal: AvatarKitError | None = None
        self._input_done = False  # the caller's audio has all been read
        self._streams: list[MemoryObjectSendStream[Any] | MemoryObjectReceiveStream[Any]] = []

    @property
    def idle(self) -> bool:
        """Nobody is speaking and every heard turn has been handed to the session."""
        return not self._speaking and not self._open and not self._closed

    @property
    def waiting_for_words(self) -> bool:
        """A turn is over but its transcript has not come yet."""
        return bool(self._closed)

    # -- running -------------------------------------------------------------------------------

    async def run(self, audio: AsyncIterator[AudioChunk]) -> None:
        """Listen until ``audio`` ends and the last turn's reply is over (or cancelled)."""
        remove = self.session.on_event(self._on_session_event)
        try:
            async with anyio.create_task_group() as sends:
                self._sends = sends
                async with anyio.create_task_group() as tg:
                    await self._start_sources(tg, audio)
                    await self._decide()
                    tg.cancel_scope.cancel()
        finally:
            remove()
            # streams of tasks that were cancelled before they ran, or never reached the end
            for stream in self._streams:
                stream.close()
            for utterance in self._heard():
                if utterance.stream is not None:
                    utterance.stream.close()
            self._inbox_send.close()
            self._inbox.close()
        if self._fatal is not None:
            raise self._fatal

    async def _start_sources(self, tg: TaskGroup, audio: AsyncIterator[AudioChunk]) -> None:
        vad_send: MemoryObjectSendStream[AudioChunk] | None = None
        stt_send: MemoryObjectSendStream[AudioChunk] | None = None
        # Bounded: a provider slower than the audio slows the reader down instead of
        # letting audio pile up without limit.
        if self.vad is not None:
            vad_send, vad_receive = anyio.create_memory_object_stream[AudioChunk](64)
            self._streams += [vad_send, vad_receive]
            tg.start_soon(self._run_vad, vad_receive)
        if self.streaming:
            stt_send, stt_receive = anyio.create_memory_object_stream[AudioChunk](64)
            self._streams += [stt_send, stt_receive]
            tg.start_soon(self._run_streaming_stt, stt_receive)
        else:
            queue_send, queue_receive = anyio.create_memory_object_stream[_Utterance](math.inf)
            self._streams += [queue_send, queue_receive]
            self._utterance_queue = queue_send
            tg.start_soon(self._run_utterance_stt, queue_receive)
        tg.start_soon(self._read, audio, vad_send, stt_send)

    async def _read(
        self,
        audio: AsyncIterator[AudioChunk],
        vad_out: MemoryObjectSendStream[AudioChunk] | None,
        stt_out: MemoryObjectSendStream[AudioChunk] | None,
    ) -> None:
        """Pull the caller's frames, convert them once per rate, hand them on."""
        to_stt = _Converter(self.stt_rate)
        to_vad = _Converter(self.vad_rate) if self.vad_rate is not None else None
        try:
            async with aclosing(_iterate(audio)) as raw, aclosing(_audio_errors(raw)) as frames:
                async for chunk in frames:
                    if not chunk.data:
                        continue
                    self._input_position += chunk.duration
                    self._arrivals.append((self._input_position, time.perf_counter()))
                    await self._hand_on(
                        to_stt(chunk), to_vad(chunk) if to_vad else b"", vad_out, stt_out
                    )
            await self._hand_on(to_stt.flush(), to_vad.flush() if to_vad else b"", vad_out, stt_out)
            self._input_done = True
        except _AudioFailed as failed:
            self._inbox_send.send_nowait(_Failure("audio", failed.error, fatal=True))
        finally:
            for out in (vad_out, stt_out):
                if out is not None:
                    out.close()

    async def _hand_on(
        self,
        stt_pcm: bytes,
        vad_pcm: bytes,
        vad_out: MemoryObjectSendStream[AudioChunk] | None,
        stt_out: MemoryObjectSendStream[AudioChunk] | None,
    ) -> None:
        try:
            if stt_pcm:
                if stt_out is not None:
                    await stt_out.send(AudioChunk(stt_pcm, self.stt_rate))
                else:
                    self._tape.append(stt_pcm)
            if vad_pcm and vad_out is not None and self.vad_rate is not None:
                await vad_out.send(AudioChunk(vad_pcm, self.vad_rate))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # that provider stopped reading: its runner reports why

    async def _clocked(
        self, source: MemoryObjectReceiveStream[AudioChunk]
    ) -> AsyncGenerator[AudioChunk, None]:
        """Feed a provider, and tick the clock each time it asks for more: by then it has
        handled (and yielded events for) everything before."""
        position = 0.0
        async with source:
            async for chunk in source:
                yield chunk
                position += chunk.duration
                self._inbox_send.send_nowait(_Tick(position))

    async def _run_vad(self, source: MemoryObjectReceiveStream[AudioChunk]) -> None:
        assert self.vad is not None
        try:
            async with aclosing(self._clocked(source)) as feed:
                async with aclosing(_iterate(self.vad.detect(feed))) as events:
                    async for event in events:
                        self._inbox_send.send_nowait(_Speech(event))
        except Exception as exc:
            error = _provider_error(exc, self.vad, "vad")
            self._inbox_send.send_nowait(_Failure("vad", error, fatal=True))
            return
        if not self._input_done:
            error = ProviderError(
                "vad stopped detecting before the audio ended", provider=type(self.vad).__name__
            )
            self._inbox_send.send_nowait(_Failure("vad", error, fatal=True))
            return
        self._inbox_send.send_nowait(_SourceDone("vad"))

    async def _run_streaming_stt(self, source: MemoryObjectReceiveStream[AudioChunk]) -> None:
        feed: AsyncGenerator[AudioChunk, None] = (
            self._clocked(source) if self.vad is None else _plain(source)
        )
        try:
            async with aclosing(feed) as audio:
                async with aclosing(_iterate(self.stt.transcribe(audio))) as transcripts:
                    async for transcript in transcripts:
                        self._inbox_send.send_nowait(_Heard(transcript, None))
        except Exception as exc:
            error = _provider_error(exc, self.stt, "stt")
            self._inbox_send.send_nowait(_Failure("stt", error, fatal=True))
            return
        if not self._input_done:
            error = ProviderError(
                "stt stopped transcribing before the audio ended",
                provider=type(self.stt).__name__,
            )
            self._inbox_send.send_nowait(_Failure("stt", error, fatal=True))
            return
        self._inbox_send.send_nowait(_SourceDone("stt"))

    async def _run_utterance_stt(self, queue: MemoryObjectReceiveStream[_Utterance]) -> None:
        """One ``transcribe`` per utterance, one at a time (they share the CPU anyway)."""
        async with queue:
            async for utterance in queue:
                send, utterance_audio = anyio.create_memory_object_stream[AudioChunk](math.inf)
                utterance.stream = send
                self._inbox_send.send_nowait(_Tick(self._clock))  # fill it from the tape
                try:
                    async with aclosing(_plain(utterance_audio)) as audio:
                        transcripts = _iterate(self.stt.transcribe(audio))
                        async with aclosing(transcripts):
                            async for transcript in transcripts:
                                self._inbox_send.send_nowait(_Heard(transcript, utterance.id))
                except Exception as exc:
                    error = _provider_error(exc, self.stt, "stt")
                    self._inbox_send.send_nowait(_Failure("stt", error, fatal=False))
                finally:
                    utterance.closed = True
                    send.close()
                    utterance_audio.close()  # also when the STT never started reading it
                self._inbox_send.send_nowait(_UtteranceDone(utterance.id))
        self._inbox_send.send_nowait(_SourceDone("stt"))

    # -- deciding ------------------------------------------------------------------------------

    async def _decide(self) -> None:
        async for message in self._inbox:
            if isinstance(message, _Tick):
                self._clock = max(self._clock, message.at)
                self._feed_utterances()
                self._expire_finals()
            elif isinstance(message, _Speech):
                self._on_speech(message.event.kind, message.event.at)
            elif isinstance(message, _Heard):
                self._on_transcript(message.transcript, message.utterance)
            elif isinstance(message, _UtteranceDone):
                self._on_utterance_done(message.utterance)
            elif isinstance(message, _SourceDone):
                self._on_source_done(message.what)
            elif isinstance(message, _SessionClosed):
                logger.debug("the session closed: listening stops")
                return
            elif isinstance(message, _Failure):
                error = self._report(message.stage, message.error)
                if message.fatal:
                    self._fatal = error
                    return
            self._check_interruption()
            self._maybe_close_turn()
            self._flush_turns()
            if self._input_over() and self._stt_done and not self._open and not self._closed:
                return

    def _input_over(self) -> bool:
        """The clock's source (the VAD, else the streaming STT) has had all the audio."""
        return self._vad_done if self.vad is not None else self._stt_done

    def _heard(self) -> list[_Utterance]:
        """Utterances not yet turned into a turn: closed turns waiting for text, then the
        open one."""
        return [u for turn in self._closed for u in turn] + self._open

    def _on_speech(self, kind: str, at: float) -> None:
        if kind == "speech_started" and not self._speaking:
            self._speaking = True
            self._end_of_turn_hint = False
            self._open_utterance(at)
            self.session._emit(UserSpeechStarted(at))
        elif kind == "speech_ended" and self._speaking:
            self._speaking = False
            self._last_speech_end = at
            current = self._current
            self._current = None
            if current is not None:
                current.end = at
                current.ended_wall = self._wall_at(at)
                if self.streaming and self._last_final_end >= at - _TAIL:
                    current.pending = False  # its words are in already
                self._feed_utterances()
            self.session._emit(UserSpeechEnded(at))

    def _open_utterance(self, at: float) -> None:
        self._next_id += 1
        busy = self.options.interruptions and self._avatar_busy()
        utterance = _Utterance(self._next_id, at, while_busy=busy, qualified=not busy)
        utterance.sent_until = max(0.0, at - self.options.preroll)
        self._open.append(utterance)
        self._current = self._last = utterance
        if self._utterance_queue is not None:
            self._utterance_queue.send_nowait(utterance)

    def _feed_utterances(self) -> None:
        """Give each whole-utterance STT call its audio up to the clock; close it at its end."""
        if self.streaming:
            return
        for utterance in self._heard():
            stream = utterance.stream
            if stream is None or utterance.closed:
                continue
            if utterance.end is None and self._clock - utterance.start > self.options.max_utterance:
                self._split(utterance)
            tail = None if utterance.end is None else utterance.end + _TAIL
            limit = min(self._clock if tail is None else tail, self._tape.end)
            if limit > utterance.sent_until:
                pcm = self._tape.slice(utterance.sent_until, limit)
                utterance.sent_until = limit
                if pcm:
                    stream.send_nowait(AudioChunk(pcm, self.stt_rate))
            if tail is not None and (utterance.sent_until >= tail - 1e-6 or self._vad_done):
                utterance.closed = True
                stream.close()
        needed = [u.sent_until for u in self._heard() if not u.closed]
        self._tape.trim(min([*needed, self._clock - self.options.preroll - 1.0]))

    def _split(self, utterance: _Utterance) -> None:
        """Speech longer than ``max_utterance``: end this STT call, go on in a new one."""
        utterance.end = self._clock
        self._open_utterance(self._clock)
        new = self._current
        assert new is not None
        new.while_busy, new.qualified = utterance.while_busy, utterance.qualified
        new.sent_until = self._clock

    def _expire_finals(self) -> None:
        """A streaming STT that stays silent after speech ended has heard nothing more."""
        if not self.streaming:
            return
        for utterance in self._heard():
            if (
                utterance.pending
                and utterance.end is not None
                and self._clock - utterance.end >= self.options.final_timeout - 1e-9
            ):
                utterance.pending = False

    def _turn_text(self) -> str:
        heard = [u for u in self._heard() if u.qualified]
        parts = [u.text() for u in heard] + [u.interim for u in heard if u.interim]
        return " ".join(p for p in parts if p)

    def _on_transcript(self, transcript: Transcript, utterance_id: int | None) -> None:
        if transcript.kind in ("speech_started", "speech_ended"):
            if self.vad is None:  # the STT is the only one that hears speech
                at = transcript.start if transcript.start is not None else self._clock
                if transcript.kind == "speech_ended" and transcript.end is not None:
                    at = transcript.end
                self._on_speech(transcript.kind, at)
            return
        utterance = self._utterance_for(utterance_id)
        if utterance is None:
            return  # a final for speech already dropped
        if transcript.kind == "interim":
            utterance.interim = transcript.text
        else:
            utterance.interim = ""
            utterance.finals.append(transcript.text)
            if transcript.end is not None:
                self._last_final_end = max(self._last_final_end, transcript.end)
            if self.streaming:
                if self.vad is None and self._speaking and transcript.end_of_turn:
                    self._on_speech("speech_ended", transcript.end or self._clock)
                if utterance.end is not None and (
                    transcript.end is None or transcript.end >= utterance.end - _TAIL
                ):
                    utterance.pending = False
                if not self._speaking and transcript.end_of_turn:
                    self._end_of_turn_hint = True
        heard = self._turn_text()
        if heard and utterance.qualified:
            self.session._emit(UserTranscript(heard, final=False))

    def _utterance_for(self, utterance_id: int | None) -> _Utterance | None:
        heard = self._heard()
        if utterance_id is not None:
            return next((u for u in heard if u.id == utterance_id), None)
        if self._current is not None:
            return self._current
        if self._last is not None and self._last in heard:
            return self._last
        # A streaming STT heard words the VAD did not (or there is no VAD): speech.
        self._on_speech("speech_started", self._clock)
        if self.vad is not None:  # the VAD says it is over already
            self._on_speech("speech_ended", self._clock)
        return self._last

    def _on_utterance_done(self, utterance_id: int) -> None:
        utterance = next((u for u in self._heard() if u.id == utterance_id), None)
        if utterance is not None:
            utterance.pending = False

    def _on_source_done(self, what: str) -> None:
        if what == "vad":
            self._vad_done = True
            if self._speaking:
                self._on_speech("speech_ended", self._clock)
            self._feed_utterances()
            if self._utterance_queue is not None:
                self._utterance_queue.close()
        else:
            self._stt_done = True
            if self.vad is None and self._speaking:
                self._on_speech("speech_ended", self._clock)
            for utterance in self._heard():
                utterance.pending = False

    # -- interruptions -------------------------------------------------------------------------

    def _avatar_busy(self) -> bool:
        return self.session.state in ("thinking", "speaking")

    def _check_interruption(self) -> None:
        busy = self._avatar_busy()
        for utterance in self._heard():
            if utterance.qualified or not utterance.while_busy:
                continue
            if not busy and utterance.end is None:
                utterance.qualified = True  # the avatar finished while the user spoke on
                continue
            end = utterance.end if utterance.end is not None else self._clock
            long_enough = end - utterance.start >= self.options.min_interruption_speech - 1e-9
            if long_enough and utterance.words() >= self.options.min_interruption_words:
                utterance.qualified = True
                if busy:
                    self._interrupt(utterance)

    def _interrupt(self, utterance: _Utterance) -> None:
        utterance.interrupted_reply = self._replies.last_turn
        if self._replies.last_turn == self._last_interrupted:
            return  # that reply is being stopped already
        self._last_interrupted = self._replies.last_turn
        assert self._sends is not None
        self._sends.start_soon(self._guarded, self.turns.interrupt())

    # -- ending a turn -------------------------------------------------------------------------

    def _maybe_close_turn(self) -> None:
        """Close the turn being heard once the user has been silent long enough: speech
        after that starts a new turn, whether or not this one's words are in yet."""
        if not self._open or self._speaking:
            return
        silence = self._clock - (self._last_speech_end or 0.0)
        if (
            self._input_over()
            or self._end_of_turn_hint
            or silence >= self.options.end_silence - 1e-9
        ):
            self._closed.append(self._open)
            self._open = []
            self._end_of_turn_hint = False

    def _flush_turns(self) -> None:
        """Send closed turns, in order, as soon as all their words are in."""
        while self._closed and not any(u.pending for u in self._closed[0]):
            self._end_turn(self._closed.popleft())

    def _end_turn(self, utterances: list[_Utterance]) -> None:
        counted = [u for u in utterances if u.qualified]
        for u in utterances:
            if not u.qualified:  # too short or too few words while the avatar spoke
                heard = redact(u.text(), self.session._all_secrets())
                logger.debug("ignored speech while the avatar was busy: %r", heard)
        text = " ".join(t for t in (u.text() for u in counted) if t)
        interrupted = next(
            (u.interrupted_reply for u in counted if u.interrupted_reply is not None), None
        )
        assert self._sends is not None
        if not text:
            if interrupted is not None and self.options.false_interruption == "resume":
                rest = self._replies.unsaid(interrupted)
                if rest:
                    logger.info("false interruption (no words): resuming the reply")
                    self._sends.start_soon(self._guarded, self.turns.say(rest))
            return
        self.session._emit(UserTranscript(text, final=True))
        ended = max((u.ended_wall for u in counted if u.ended_wall is not None), default=None)
        voice = _VoiceTurn(ended, time.perf_counter(), after_turn=self._replies.last_turn)
        self._voice_turns.append(voice)
        self._sends.start_soon(self._send, text, voice)

    async def _send(self, text: str, voice: _VoiceTurn) -> None:
        voice.send_called = time.perf_counter()
        try:
            await self._guarded(self.turns.send(text))
        finally:
            if voice in self._voice_turns:  # the turn never ran (session closed): no metrics
                self._voice_turns.remove(voice)

    async def _guarded(self, call: Any) -> None:
        try:
            await call
        except SessionError:
            logger.debug("the session closed while listening")
        except AvatarKitError as exc:  # the session reported it as an ErrorEvent already
            logger.info("a spoken turn failed: %s", exc)

    def _report(self, stage: str, error: AvatarKitError) -> AvatarKitError:
        """Log and emit ``error``, cleaned of the session's secrets (a vendor error may hold
        a key in a URL); returns the cleaned error, which is what ``listen`` raises."""
        cleaned = redact_exception(error, self.session._all_secrets())
        assert isinstance(cleaned, AvatarKitError)  # cleaned in place, never replaced
        logger.warning("%s failed: %s", stage, cleaned)
        self.session._emit(ErrorEvent(self._replies.last_turn, stage, str(cleaned), cleaned))
        return cleaned

    # -- metrics -------------------------------------------------------------------------------

    def _wall_at(self, at: float) -> float | None:
        """When the audio at ``at`` seconds reached :meth:`run` (wall clock)."""
        for position, wall in self._arrivals:
            if position >= at - 1e-9:
                return wall
        return self._arrivals[-1][1] if self._arrivals else None

    def _on_session_event(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.state == "closed":
            try:
                self._inbox_send.send_nowait(_SessionClosed())
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            return
        self._replies(event)
        if not self._voice_turns:
            return
        voice = self._voice_turns[0]
        turn = getattr(event, "turn", None)
        if voice.turn is None and voice.send_called and isinstance(turn, int):
            if turn > voice.after_turn:
                voice.turn = turn
        if isinstance(event, TurnMetrics) and event.turn == voice.turn:
            self._voice_turns.pop(0)
            self.session._emit(_voice_metrics(voice, event))


def _voice_metrics(voice: _VoiceTurn, metrics: TurnMetrics) -> VoiceMetrics:
    assert voice.turn is not None
    if voice.speech_ended is None:
        return VoiceMetrics(voice.turn, None, None, None)
    lead = voice.send_called - voice.speech_ended

    def after(value: float | None) -> float | None:
        return None if value is None else lead + value

    return VoiceMetrics(
        voice.turn,
        voice.final - voice.speech_ended,
        after(metrics.time_to_first_token),
        after(metrics.time_to_first_speech),
    )


async def _iterate(source: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """``source`` as an async generator that closes it when closed (for ``aclosing``)."""
    try:
        async for item in source:
            yield item
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


class _AudioFailed(Exception):
    def __init__(self, error: AvatarKitError) -> None:
        self.error = error


async def _audio_errors(frames: AsyncIterator[AudioChunk]) -> AsyncGenerator[AudioChunk, None]:
    """The caller's audio, its failures turned into an :class:`AvatarKitError` for ``listen``
    to raise (a microphone that vanished, a broken file)."""
    iterator = frames.__aiter__()
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except AvatarKitError as exc:
            raise _AudioFailed(exc) from exc
        except Exception as exc:
            raise _AudioFailed(
                AvatarKitError(f"the audio source failed: {type(exc).__name__}: {exc}")
            ) from exc
        yield chunk


async def _plain(
    source: MemoryObjectReceiveStream[AudioChunk],
) -> AsyncGenerator[AudioChunk, None]:
    async with source:
        async for chunk in source:
            yield chunk
