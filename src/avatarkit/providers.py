"""What a provider is: the protocols LLMs, TTS engines and renderers implement.

A provider is any object with the right async methods; nothing to subclass. Renderers come in two
kinds, told apart by which methods they have (see :func:`renderer_capabilities`): one that speaks
text itself (``speak_text``) needs no TTS, one that only plays audio (``speak``) is fed by the TTS.

Voice input adds two kinds: :class:`STT` (the user's audio in, transcripts out) and :class:`VAD`
(the user's audio in, speech start/end out). Both take 16-bit mono PCM at the rate they ask for
with an optional ``sample_rate`` attribute (default 16000); the session resamples for them.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "VAD",
    "AudioChunk",
    "IncrementalTTS",
    "Message",
    "Renderer",
    "RendererCapabilities",
    "ReportsProgress",
    "Role",
    "SpeaksAudio",
    "SpeaksText",
    "SpeechEvent",
    "SpeechStream",
    "TTSCapabilities",
    "Transcript",
    "TranscriptKind",
    "ViewerConnection",
    "WordTiming",
    "renderer_capabilities",
    "stt_sample_rate",
    "stt_streams",
    "tts_capabilities",
    "vad_sample_rate",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of 16-bit little-endian PCM audio (interleaved when ``channels > 1``)."""

    data: bytes
    sample_rate: int
    channels: int = 1

    @property
    def frames(self) -> int:
        """Number of sample frames (samples per channel)."""
        return len(self.data) // (2 * self.channels)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


@dataclass(frozen=True, slots=True)
class ViewerConnection:
    """Where an application can watch a renderer's live media (e.g. a LiveKit room).

    Renderers that stream to a room expose one as ``renderer.viewer`` once started, so a web
    page or another service can join as a viewer.
    """

    url: str
    token: str
    session_id: str | None = None
    kind: str = "livekit"

    def __repr__(self) -> str:  # the token grants access to the room: keep it out of logs
        return (
            f"ViewerConnection(url={self.url!r}, token='***', "
            f"session_id={self.session_id!r}, kind={self.kind!r})"
        )


@runtime_checkable
class LLM(Protocol):
    """Streams a reply as text deltas."""

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]: ...


@runtime_checkable
class TTS(Protocol):
    """Turns one sentence into audio, streamed as it is synthesised."""

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]: ...


TranscriptKind = Literal["interim", "final", "speech_started", "speech_ended"]


@dataclass(frozen=True, slots=True)
class WordTiming:
    """A word and when it is heard: seconds from the start of the audio it belongs to (the
    audio given to an STT call, or the audio of an incremental TTS stream)."""

    word: str
    start: float
    end: float


@runtime_checkable
class SpeechStream(Protocol):
    """One turn of incremental synthesis: text goes in as the LLM writes it, audio comes out.

    ``push`` appends text exactly as given (spaces included); ``flush`` asks for everything
    pushed so far to be spoken now (a sentence ended); ``end`` says no more text is coming, after
    which iteration finishes with the last audio. Iterating yields :class:`AudioChunk` and, where
    the service reports them, :class:`WordTiming` whose times count from the stream's first
    audio sample. Leaving the ``open_stream`` context before the end cancels synthesis at once.
    """

    async def push(self, text: str) -> None: ...

    async def flush(self) -> None: ...

    async def end(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[AudioChunk | WordTiming]: ...


@runtime_checkable
class IncrementalTTS(Protocol):
    """A TTS that takes a turn's text as it is written (WebSocket TTS: ElevenLabs, Cartesia)."""

    def open_stream(self) -> AbstractAsyncContextManager[SpeechStream]: ...


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an STT says about the audio it was given.

    ``interim`` text may still change; ``final`` text for that stretch of audio will not.
    ``speech_started``/``speech_ended`` come from services that detect speech themselves.
    Times are seconds into the audio given to this ``transcribe`` call. ``end_of_turn`` is set
    when the service itself marked an endpoint (e.g. Deepgram's ``speech_final``).
    """

    kind: TranscriptKind
    text: str = ""
    start: float | None = None
    end: float | None = None
    words: tuple[WordTiming, ...] = ()
    end_of_turn: bool = False


@runtime_checkable
class STT(Protocol):
    """Speech to text: the user's audio in, transcripts out.

    Optional attributes the session reads: ``sample_rate`` (int, default 16000; the session
    resamples and downmixes to mono PCM16 at that rate) and ``streaming`` (bool, default
    ``False``). A *streaming* STT gets one long ``transcribe`` call over the whole microphone
    stream and yields interim and final results as it goes. A non-streaming one is called once
    per utterance the VAD delimited: its input ends where the utterance ends, and it yields at
    least one ``final`` before its own iterator ends.
    """

    def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]: ...


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    """The VAD heard speech start or end ``at`` seconds into the audio stream it was given."""

    kind: Literal["speech_started", "speech_ended"]
    at: float


@runtime_checkable
class VAD(Protocol):
    """Voice activity detection: audio in, speech start/end out (optional ``sample_rate``).

    Events alternate, beginning with ``speech_started``, and are yielded as soon as the VAD is
    sure (a ``speech_ended`` only after its own minimum silence), each ``at`` the moment it
    refers to. If the audio ends during speech, a last ``speech_ended`` closes it. The iterator
    ends with the audio.
    """

    def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[SpeechEvent]: ...


def _rate(provider: object) -> int:
    rate = getattr(provider, "sample_rate", None)
    return rate if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0 else 16000


def stt_sample_rate(stt: object) -> int:
    """The rate ``stt`` wants its audio at (its ``sample_rate``, else 16000)."""
    return _rate(stt)


def vad_sample_rate(vad: object) -> int:
    """The rate ``vad`` wants its audio at (its ``sample_rate``, else 16000)."""
    return _rate(vad)


def stt_streams(stt: object) -> bool:
    """Whether ``stt`` transcribes one long stream (``streaming = True``) or whole utterances."""
    return getattr(stt, "streaming", False) is True


@runtime_checkable
class Renderer(Protocol):
    """An avatar. Also implements :class:`SpeaksText` and/or :class:`SpeaksAudio`."""

    async def start(self) -> None: ...

    async def interrupt(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class SpeaksText(Protocol):
    """A renderer that does its own speech: it is given each sentence's text."""

    async def speak_text(self, text: str) -> None: ...


@runtime_checkable
class SpeaksAudio(Protocol):
    """A renderer that plays audio; it may set ``sample_rate`` to the rate it wants, and
    ``max_chunk_seconds`` to take audio already synthesised in blocks of up to that length."""

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None: ...


@runtime_checkable
class ReportsProgress(Protocol):
    """Optional: a text renderer that knows how much of its last utterance was actually said.

    The session calls ``spoken_fraction()`` (synchronously) right after ``speak_text`` returns,
    raises or is cancelled, before the next utterance starts. Return the share of that text the
    listener has heard, from 0 to 1, or ``None`` when you cannot tell. History records the whole
    words inside that share of the text's characters. Without it, an utterance that did not
    finish by itself is estimated from the time spent speaking over a generous estimate of its
    length, which errs short. (On the audio route the session counts the audio the renderer
    took from its iterator, so a renderer there says how far it got by what it takes.)
    """

    def spoken_fraction(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class RendererCapabilities:
    """Which routes a renderer can be driven by."""

    text: bool
    audio: bool

    def describe(self) -> str:
        """Human-readable form used by the CLI: ``"speaks text"``, ``"speaks audio"``, ..."""
        parts = [name for name, has in (("text", self.text), ("audio", self.audio)) if has]
        return "speaks " + " and ".join(parts) if parts else "speaks nothing"


def _has_async_method(obj: object, name: str) -> bool:
    method = getattr(obj, name, None)
    return method is not None and inspect.iscoroutinefunction(method)


def renderer_capabilities(renderer: object) -> RendererCapabilities:
    """Which routes ``renderer`` (an instance or a class) supports.

    Method presence is the single source of truth, so a capability can never be declared and
    not implemented. Only ``async def`` methods count.
    """
    return RendererCapabilities(
        text=_has_async_method(renderer, "speak_text"),
        audio=_has_async_method(renderer, "speak"),
    )


@dataclass(frozen=True, slots=True)
class TTSCapabilities:
    """How a TTS can be fed: a sentence at a time, a whole turn as it is written, or both."""

    sentences: bool
    incremental: bool


def tts_capabilities(tts: object) -> TTSCapabilities:
    """Which ways ``tts`` (an instance or a class) can be fed; method presence decides, as for
    renderers. ``open_stream`` returns an async context manager, so it is a plain method."""
    return TTSCapabilities(
        sentences=callable(getattr(tts, "synthesize", None)),
        incremental=callable(getattr(tts, "open_stream", None)),
    )
