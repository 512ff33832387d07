"""What a provider is: the protocols LLMs, TTS engines and renderers implement.

A provider is any object with the right async methods; nothing to subclass. Renderers come in two
kinds, told apart by which methods they have (see :func:`renderer_capabilities`): one that speaks
text itself (``speak_text``) needs no TTS, one that only plays audio (``speak``) is fed by the TTS.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "LLM",
    "TTS",
    "AudioChunk",
    "Message",
    "Renderer",
    "RendererCapabilities",
    "ReportsProgress",
    "Role",
    "SpeaksAudio",
    "SpeaksText",
    "ViewerConnection",
    "renderer_capabilities",
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
