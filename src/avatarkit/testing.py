"""Fakes and helpers for testing avatarkit and avatarkit plugins.

The fakes record every call so tests can assert on what the session did; their latencies are
exact, so benchmarks can subtract them. Register them for one test with :func:`registered`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import select
import socket
import struct
import sys
import threading
import time
from array import array
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.lowlevel
from pydantic import BaseModel, ConfigDict

from avatarkit.hookspecs import hookimpl
from avatarkit.plugins import PluginManager, ProviderRegistry, get_plugin_manager, load_registry
from avatarkit.providers import AudioChunk, Message, SpeechEvent, Transcript, WordTiming

__all__ = [
    "ClientGone",
    "FakeAudioRenderer",
    "FakeIncrementalTTS",
    "FakeLLM",
    "FakeProvidersPlugin",
    "FakeSTT",
    "FakeTTS",
    "FakeTextRenderer",
    "FakeVAD",
    "FakeWebSocketConnection",
    "LinkFaults",
    "LoopbackServer",
    "LoopbackWebSocketServer",
    "ReceivedRequest",
    "Refusal",
    "Responder",
    "ResponseGate",
    "audio_feed",
    "cancel_once",
    "check_incremental_tts",
    "check_llm",
    "check_renderer",
    "check_stt",
    "check_tts",
    "check_vad",
    "collect_transcripts",
    "installed_distribution",
    "loopback_server",
    "registered",
    "tokens",
    "tone",
    "wait_until",
]


def tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens the way an LLM streams them (trailing spaces kept)."""
    return re.findall(r"\S+\s*|\s+", text)


def tone(
    duration: float, sample_rate: int, *, frequency: float = 220.0, level: float = 0.5
) -> bytes:
    """A sine tone as 16-bit mono PCM: audible, non-silent test audio."""
    frames = round(duration * sample_rate)
    amplitude = int(32767 * level)
    step = 2 * math.pi * frequency / sample_rate
    return struct.pack(f"<{frames}h", *(int(amplitude * math.sin(step * i)) for i in range(frames)))


class _Counted:
    """How often a fake was started and closed: ``started``, ``closed``."""

    def __init__(self) -> None:
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1


class FakeLLM(_Counted):
    """An LLM that streams canned replies, one per call, cycling.

    ``first_token_delay`` and ``token_delay`` are exact sleeps; ``error`` is raised after
    ``error_after`` tokens (0: before the first).
    """

    def __init__(
        self,
        replies: Sequence[str | Sequence[str]] = ("Hello there. How can I help you today?",),
        *,
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        error: BaseException | None = None,
        error_after: int = 0,
    ) -> None:
        self.replies = [tokens(r) if isinstance(r, str) else list(r) for r in replies]
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.error = error
        self.error_after = error_after
        self.calls: list[list[Message]] = []
        self.completed = 0
        self.cancelled = 0
        super().__init__()

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        reply = self.replies[(len(self.calls) - 1) % len(self.replies)]
        finished = False
        try:
            for i, token in enumerate(reply):
                if self.error is not None and i == self.error_after:
                    raise self.error
                delay = self.first_token_delay if i == 0 else self.token_delay
                if delay:
                    await anyio.sleep(delay)
                yield token
            if self.error is not None and self.error_after >= len(reply):
                raise self.error
            finished = True
            self.completed += 1
        finally:
            if not finished and self.error is None:
                self.cancelled += 1


class _ToneVoice(_Counted):
    """What the fake TTSs share: ``ms_per_char`` of tone per character, an ``error`` raised
    after ``error_after`` audio chunks, and how often they were started and closed."""

    def __init__(
        self,
        *,
        sample_rate: int,
        ms_per_char: float,
        error: BaseException | None,
        error_after: int,
    ) -> None:
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        self.error = error
        self.error_after = error_after
        super().__init__()

    def _duration(self, chars: int) -> float:
        return chars * self.ms_per_char / 1000

    def _tone(self, chars: int) -> bytes:
        """The audio of ``chars`` characters."""
        return tone(self._duration(chars), self.sample_rate)


class FakeTTS(_ToneVoice):
    """A TTS that turns each character into ``ms_per_char`` of tone, in ``chunk_ms`` chunks."""

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        ms_per_char: float = 10.0,
        chunk_ms: float = 20.0,
        first_chunk_delay: float = 0.0,
        chunk_delay: float = 0.0,
        error: BaseException | None = None,
        error_after: int = 0,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, ms_per_char=ms_per_char, error=error, error_after=error_after
        )
        self.chunk_ms = chunk_ms
        self.first_chunk_delay = first_chunk_delay
        self.chunk_delay = chunk_delay
        self.texts: list[str] = []
        self.completed = 0
        self.cancelled = 0

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.texts.append(text)
        audio = self._tone(len(text))
        step = max(2, round(self.sample_rate * self.chunk_ms / 1000) * 2)
        finished = False
        try:
            for i, offset in enumerate(range(0, len(audio), step)):
                if self.error is not None and i == self.error_after:
                    raise self.error
                delay = self.first_chunk_delay if i == 0 else self.chunk_delay
                if delay:
                    await anyio.sleep(delay)
                yield AudioChunk(audio[offset : offset + step], self.sample_rate)
            finished = True
            self.completed += 1
        finally:
            if not finished and self.error is None:
                self.cancelled += 1


class _FakeRenderer(_Counted):
    def __init__(self) -> None:
        super().__init__()
        self.interrupts = 0
        self.events: list[tuple[str, float]] = []
        self._interrupted = anyio.Event()

    async def interrupt(self) -> None:
        self.interrupts += 1
        self.events.append(("interrupt", anyio.current_time()))
        self._interrupted.set()

    def _new_utterance(self) -> anyio.Event:
        self._interrupted = anyio.Event()
        return self._interrupted


class FakeTextRenderer(_FakeRenderer):
    """A renderer that speaks text itself; each sentence takes ``seconds_per_char`` to say.

    It reports how much of each utterance it said (``spoken_fraction()``, see
    :class:`~avatarkit.providers.ReportsProgress`) unless ``reports_progress`` is false; either
    way :attr:`fractions` records the truth, one entry per ``speak_text`` call.
    """

    def __init__(self, *, seconds_per_char: float = 0.0, reports_progress: bool = True) -> None:
        super().__init__()
        self.seconds_per_char = seconds_per_char
        self.reports_progress = reports_progress
        self.spoken: list[str] = []
        self.completed: list[str] = []
        #: the share of each ``spoken`` text actually said (1.0 when completed)
        self.fractions: list[float] = []

    async def speak_text(self, text: str) -> None:
        interrupted = self._new_utterance()
        self.spoken.append(text)
        self.fractions.append(0.0)
        self.events.append(("speak_text", anyio.current_time()))
        length = len(text) * self.seconds_per_char
        started = anyio.current_time()
        try:
            with anyio.move_on_after(length):
                await interrupted.wait()
        finally:
            if not interrupted.is_set() and anyio.current_time() - started >= length:
                self.completed.append(text)
                self.fractions[-1] = 1.0
            else:
                said = (anyio.current_time() - started) / length if length else 0.0
                self.fractions[-1] = min(said, 1.0)

    def spoken_fraction(self) -> float | None:
        """The share of the last utterance said (``None`` if not ``reports_progress``)."""
        if not self.reports_progress or not self.fractions:
            return None
        return self.fractions[-1]


@dataclass
class Utterance:
    """What a :class:`FakeAudioRenderer` received for one ``speak`` call."""

    chunks: list[AudioChunk] = field(default_factory=list)
    started_at: float = 0.0
    first_audio_at: float | None = None
    ended_at: float | None = None
    interrupted: bool = False

    @property
    def audio(self) -> bytes:
        return b"".join(c.data for c in self.chunks)

    @property
    def duration(self) -> float:
        return sum(c.duration for c in self.chunks)


class FakeAudioRenderer(_FakeRenderer):
    """A renderer fed audio. With ``realtime`` it plays each chunk for its duration."""

    def __init__(self, *, realtime: bool = False, sample_rate: int | None = None) -> None:
        super().__init__()
        self.realtime = realtime
        self.sample_rate = sample_rate
        self.utterances: list[Utterance] = []

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        interrupted = self._new_utterance()
        utterance = Utterance(started_at=anyio.current_time())
        self.utterances.append(utterance)
        async for chunk in audio:
            # Every chunk taken from the iterator is recorded: it is what the session counts
            # as said, and what tests compare history with.
            if utterance.first_audio_at is None:
                utterance.first_audio_at = anyio.current_time()
            utterance.chunks.append(chunk)
            if self.realtime:
                with anyio.move_on_after(chunk.duration):
                    await interrupted.wait()
            if interrupted.is_set():
                break
        utterance.interrupted = interrupted.is_set()
        utterance.ended_at = anyio.current_time()


class _FakeLLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replies: list[str] = ["Hello there. How can I help you today?"]
    first_token_delay: float = 0.0
    token_delay: float = 0.0


class _FakeTTSOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_rate: int = 16000
    ms_per_char: float = 10.0
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0


class _FakeTextRendererOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds_per_char: float = 0.0


class _FakeAudioRendererOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    realtime: bool = False
    sample_rate: int | None = None


class _FakeSTTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transcripts: list[str] = []
    streaming: bool = False
    sample_rate: int = 16000
    final_delay: float = 0.0
    min_silence: float = 0.3


class _FakeVADOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_rate: int = 16000
    threshold: float = 0.02
    min_silence: float = 0.2


class FakeProvidersPlugin:
    """A plugin registering the fakes as ``fake`` (llm, tts, stt, vad), ``fake-text`` and
    ``fake-audio`` (renderers).

    ``instances`` records every provider built through it, so a test that goes through YAML can
    still inspect the objects the session used.
    """

    __name__ = "avatarkit-fakes"

    def __init__(self) -> None:
        self.instances: list[Any] = []

    def _track(self, cls: type[Any]) -> Any:
        def factory(**kwargs: Any) -> Any:
            instance = cls(**kwargs)
            self.instances.append(instance)
            return instance

        factory.__name__ = cls.__name__
        factory.__qualname__ = cls.__qualname__
        factory.__wrapped__ = cls  # type: ignore[attr-defined]  # capabilities seen at load time
        return factory

    def of(self, cls: type[Any]) -> list[Any]:
        """The instances of ``cls`` built so far."""
        return [i for i in self.instances if isinstance(i, cls)]

    @hookimpl
    def register_providers(self, registry: ProviderRegistry) -> None:
        registry.llm("fake", self._track(FakeLLM), options=_FakeLLMOptions)
        registry.tts("fake", self._track(FakeTTS), options=_FakeTTSOptions)
        registry.renderer(
            "fake-text", self._track(FakeTextRenderer), options=_FakeTextRendererOptions
        )
        registry.renderer(
            "fake-audio", self._track(FakeAudioRenderer), options=_FakeAudioRendererOptions
        )
        registry.stt("fake", self._track(FakeSTT), options=_FakeSTTOptions)
        registry.vad("fake", self._track(FakeVAD), options=_FakeVADOptions)


@contextmanager
def registered(*plugins: object, entry_points: bool = False) -> Iterator[ProviderRegistry]:
    """A registry with the built-ins plus ``plugins`` (and installed plugins if asked)."""
    pm: PluginManager = get_plugin_manager(entry_points=entry_points)
    for i, plugin in enumerate(plugins):
        pm.register(
            plugin, name=f"test-plugin-{i}-{getattr(plugin, '__name__', type(plugin).__name__)}"
        )
    try:
        yield load_registry(pm)
    finally:
        for plugin in plugins:
            pm.unregister(plugin)


@contextmanager
def installed_distribution(
    root: Path,
    name: str,
    *,
    version: str = "0.0.1",
    entry_points: Mapping[str, str],
    files: Mapping[str, str],
) -> Iterator[Path]:
    """Install a distribution the way pip lays it out (a ``.dist-info`` beside its modules) in
    ``root`` and put ``root`` on ``sys.path``, so ``importlib.metadata`` discovers its
    ``avatarkit`` entry points for real. ``files`` maps relative paths to source text.
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = ["[avatarkit]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    modules_before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        top_levels = {Path(rel).parts[0].removesuffix(".py") for rel in files}
        for mod in set(sys.modules) - modules_before:
            if mod.split(".")[0] in top_levels:
                del sys.modules[mod]


async def wait_until(predicate: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``predicate`` until it is true (fails after ``within`` seconds).

    For tests that wait on a fake's recorded state, which has no event to wait on.
    """
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - the fakes' state has no event to wait on
            await anyio.sleep(0.002)


async def cancel_once(
    ready: Callable[[], bool], work: Callable[[], Awaitable[object]], *, after: float = 0.0
) -> bool:
    """Run ``work()`` and cancel it once ``ready()`` holds (and ``after`` seconds more);
    ``True`` if that cancellation cut it short.

    For tests that cancel at a moment a fake's state names (the request arrived, the text was
    sent), not after a fixed delay that a loaded machine can reach before anything happened.
    """
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel() -> None:
                await wait_until(ready)
                await anyio.sleep(after)
                scope.cancel()

            tg.start_soon(cancel)
            await work()
            tg.cancel_scope.cancel()  # it ended by itself: nothing left to cancel
    return scope.cancelled_caught


# -- conformance checks for plugin authors ---------------------------------------------------------

_CHECK_MESSAGES = (
    Message("system", "You are a test."),
    Message("user", "Say something short, please."),
)


async def _maybe_close(provider: object) -> None:
    close = getattr(provider, "close", None)
    if close is not None:
        result = close()
        if hasattr(result, "__await__"):
            await result


async def _close_twice_and_cancelled(provider: object, what: str) -> None:
    """``close`` must be idempotent and must not fail when called from a cancelled scope."""
    if getattr(provider, "close", None) is None:
        return
    with anyio.CancelScope() as scope:
        scope.cancel()
        await _maybe_close(provider)
    try:
        await _maybe_close(provider)
        await _maybe_close(provider)
    except Exception as exc:
        raise AssertionError(f"{what}.close() is not idempotent: {exc!r}") from exc


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def check_llm(
    llm: Any, messages: Sequence[Message] = _CHECK_MESSAGES, *, patience: float = 30.0
) -> str:
    """Check that ``llm`` behaves as the session expects; returns the reply it streamed.

    ``stream`` yields non-empty ``str`` deltas; abandoning the stream after the first delta
    (what an interrupt does) does not raise; ``close`` is idempotent and cancellation-safe.
    Call it inside your test's own ``start``/``close`` if the provider needs starting.
    """
    with anyio.fail_after(patience):
        deltas: list[str] = []
        stream = llm.stream(list(messages))
        try:
            async for delta in stream:
                assert isinstance(delta, str), f"stream yielded {type(delta).__name__}, not str"
                deltas.append(delta)
        finally:
            await _aclose(stream)
        reply = "".join(deltas)
        assert reply.strip(), "stream yielded no text"
        stream = llm.stream(list(messages))
        first = await stream.__anext__()
        assert isinstance(first, str), f"stream yielded {type(first).__name__}, not str"
        await _aclose(stream)  # an interrupt abandons the stream like this
    await _close_twice_and_cancelled(llm, "llm")
    return reply


async def _collect_audio(audio: Any, chunks: list[AudioChunk]) -> None:
    async for chunk in audio:
        assert isinstance(chunk, AudioChunk), f"yielded {type(chunk).__name__}, not AudioChunk"
        assert isinstance(chunk.data, bytes), "AudioChunk.data must be bytes"
        assert isinstance(chunk.sample_rate, int), "sample_rate must be an int"
        assert chunk.sample_rate > 0, f"sample_rate must be positive, got {chunk.sample_rate}"
        assert chunk.channels >= 1, f"channels must be 1 or more, got {chunk.channels}"
        assert len(chunk.data) % (2 * chunk.channels) == 0, (
            f"chunk of {len(chunk.data)} bytes is not whole 16-bit frames of "
            f"{chunk.channels} channel(s)"
        )
        chunks.append(chunk)


async def check_tts(
    tts: Any, text: str = "Hello there, this is a test.", *, patience: float = 30.0
) -> list[AudioChunk]:
    """Check that ``tts`` yields valid PCM for ``text``; returns the chunks.

    Every chunk is an :class:`~avatarkit.AudioChunk` of whole 16-bit frames at one positive
    sample rate, the audio is not empty, abandoning the stream after one chunk does not raise,
    and ``close`` is idempotent and cancellation-safe.
    """
    with anyio.fail_after(patience):
        chunks: list[AudioChunk] = []
        audio = tts.synthesize(text)
        try:
            await _collect_audio(audio, chunks)
        finally:
            await _aclose(audio)
        assert chunks, "synthesize yielded no audio"
        rates = {(c.sample_rate, c.channels) for c in chunks}
        assert len(rates) == 1, f"chunks change sample rate or channels mid-stream: {rates}"
        assert sum(c.frames for c in chunks) > 0, "synthesize yielded only empty chunks"
        stream = tts.synthesize(text)
        await stream.__anext__()
        await _aclose(stream)
    await _close_twice_and_cancelled(tts, "tts")
    return chunks


async def _audio(sample_rate: int, chunks: int) -> AsyncGenerator[AudioChunk, None]:
    chunk = tone(0.02, sample_rate)
    for _ in range(chunks):
        yield AudioChunk(chunk, sample_rate)
        await anyio.lowlevel.checkpoint()


async def check_renderer(renderer: Any, *, patience: float = 10.0) -> None:
    """Check that ``renderer`` follows the renderer contract.

    It has ``speak_text`` and/or ``speak`` (async); after ``start``, each returns for a short
    utterance; ``interrupt`` during a long utterance makes it return promptly (within
    ``patience`` seconds, a hang guard, not a speed test); a ``spoken_fraction()`` report, if
    it has one, is a share from 0 to 1; ``close`` is
    idempotent and cancellation-safe. Starts and closes the renderer itself.
    """
    from avatarkit.providers import renderer_capabilities

    caps = renderer_capabilities(renderer)
    assert caps.text or caps.audio, "renderer has neither async speak_text nor async speak"
    for method in ("start", "interrupt", "close"):
        assert callable(getattr(renderer, method, None)), f"renderer has no {method}()"
    rate = getattr(renderer, "sample_rate", None) or 16000
    with anyio.fail_after(patience):
        await renderer.start()
    try:
        if caps.text:
            with anyio.fail_after(patience):
                await renderer.speak_text("Hello.")
            _check_report(renderer)
            await _check_interrupt(
                renderer, lambda: renderer.speak_text("word " * 2000), patience, "speak_text"
            )
            _check_report(renderer)
        if caps.audio:
            short = _audio(rate, 3)
            try:
                with anyio.fail_after(patience):
                    await renderer.speak(short)
            finally:
                await short.aclose()
            endless = _audio(rate, 3000)  # a minute: interrupt must end speak long before
            try:
                await _check_interrupt(renderer, lambda: renderer.speak(endless), patience, "speak")
            finally:
                await endless.aclose()
    finally:
        with anyio.CancelScope(shield=True):
            await _close_twice_and_cancelled(renderer, "renderer")


def _check_report(renderer: Any) -> None:
    """A renderer that reports ``spoken_fraction()`` reports a share from 0 to 1 (or None)."""
    report = getattr(renderer, "spoken_fraction", None)
    if not callable(report):
        return
    value = report()
    if value is None:
        return
    assert isinstance(value, int | float), f"spoken_fraction() returned {type(value).__name__}"
    assert 0 <= value <= 1, f"spoken_fraction() returned {value}, not a share from 0 to 1"


async def _check_interrupt(renderer: Any, speak: Any, patience: float, name: str) -> None:
    returned = anyio.Event()

    async def run() -> None:
        await speak()
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()  # let the utterance begin
        await renderer.interrupt()
        with anyio.move_on_after(patience):
            await returned.wait()
        tg.cancel_scope.cancel()
    if not returned.is_set():
        raise AssertionError(f"{name} did not return within {patience}s of interrupt()")


# -- voice input fakes -----------------------------------------------------------------------------


def _frame_levels(data: bytes) -> float:
    """RMS level (0..1) of PCM16 mono bytes, without numpy (the fakes stay dependency-free)."""
    samples = array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(sum(x * x for x in samples) / len(samples)) / 32768.0


class _EnergyGate:
    """Loud/quiet frames to speech start/end: the fakes' stand-in for a real VAD.

    Frames of ``frame_ms`` above ``threshold`` RMS are speech; speech ends after
    ``min_silence`` seconds below it. Times are seconds into the audio fed so far.
    """

    def __init__(self, sample_rate: int, threshold: float, min_silence: float, frame_ms: float):
        self.frame_bytes = max(2, round(sample_rate * frame_ms / 1000) * 2)
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.min_silence = min_silence
        self._pending = b""
        self.position = 0.0  # seconds of audio consumed
        self.in_speech = False
        self.speech_start = 0.0
        self.last_loud_end = 0.0

    def feed(self, data: bytes) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        self._pending += data
        while len(self._pending) >= self.frame_bytes:
            frame, self._pending = (
                self._pending[: self.frame_bytes],
                self._pending[self.frame_bytes :],
            )
            start = self.position
            self.position += len(frame) / 2 / self.sample_rate
            if _frame_levels(frame) >= self.threshold:
                if not self.in_speech:
                    self.in_speech = True
                    self.speech_start = start
                    events.append(SpeechEvent("speech_started", start))
                self.last_loud_end = self.position
            elif self.in_speech and self.position - self.last_loud_end >= self.min_silence - 1e-9:
                self.in_speech = False
                events.append(SpeechEvent("speech_ended", self.last_loud_end))
        return events

    def finish(self) -> list[SpeechEvent]:
        if not self.in_speech:
            return []
        self.in_speech = False
        return [SpeechEvent("speech_ended", self.last_loud_end)]


def _checked_pcm(chunk: AudioChunk, rate: int, who: str) -> bytes:
    if chunk.sample_rate != rate or chunk.channels != 1:
        raise AssertionError(
            f"{who} wants mono audio at {rate} Hz, got {chunk.channels} channel(s) at "
            f"{chunk.sample_rate} Hz"
        )
    return chunk.data


class FakeVAD(_Counted):
    """A VAD that calls loud audio speech: frames above ``threshold`` RMS.

    Speech ends after ``min_silence`` seconds below the threshold. Deterministic, so tests can
    build exact scenarios from :func:`tone` and silence. Records each audio stream's length.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        threshold: float = 0.02,
        min_silence: float = 0.2,
        frame_ms: float = 20.0,
        error: BaseException | None = None,
        error_at: float = 0.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.min_silence = min_silence
        self.frame_ms = frame_ms
        self.error = error
        self.error_at = error_at
        self.streams: list[float] = []  # seconds of audio seen, per detect() call
        super().__init__()

    async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[SpeechEvent]:
        gate = _EnergyGate(self.sample_rate, self.threshold, self.min_silence, self.frame_ms)
        self.streams.append(0.0)
        index = len(self.streams) - 1
        async for chunk in audio:
            events = gate.feed(_checked_pcm(chunk, self.sample_rate, "FakeVAD"))
            self.streams[index] = gate.position
            if self.error is not None and gate.position >= self.error_at:
                raise self.error
            for event in events:
                yield event
        for event in gate.finish():
            yield event


class FakeSTT(_Counted):
    """An STT that "recognises" the scripted ``transcripts``, one per utterance, in order.

    Not streaming (default): each ``transcribe`` call consumes its audio, waits
    ``final_delay`` and yields one final with the next transcript (``""`` entries stand for
    noise). Streaming: one call over the whole stream; loud audio (see :class:`FakeVAD`) is an
    utterance, revealed as interims at ``words_per_second`` and finalised ``min_silence`` after
    it ends (``end_of_turn`` set), with speech start/end transcripts. After the script runs out
    it says ``"utterance N"``. ``calls`` keeps the seconds of audio each call got.
    """

    streaming: bool = False  # on the class too, so a config check can read it unbuilt

    def __init__(
        self,
        transcripts: Sequence[str] = (),
        *,
        streaming: bool = False,
        sample_rate: int = 16000,
        final_delay: float = 0.0,
        words_per_second: float = 3.0,
        threshold: float = 0.02,
        min_silence: float = 0.3,
        error: BaseException | None = None,
        error_at: float = 0.0,
    ) -> None:
        self.transcripts = list(transcripts)
        self.streaming = streaming
        self.sample_rate = sample_rate
        self.final_delay = final_delay
        self.words_per_second = words_per_second
        self.threshold = threshold
        self.min_silence = min_silence
        self.error = error
        self.error_at = error_at
        self.calls: list[float] = []
        self.finals: list[str] = []
        self.completed = 0
        self.cancelled = 0
        super().__init__()

    def _next_text(self) -> str:
        n = len(self.finals)
        text = self.transcripts[n] if n < len(self.transcripts) else f"utterance {n + 1}"
        self.finals.append(text)
        return text

    @staticmethod
    def _words(text: str, start: float, end: float) -> tuple[WordTiming, ...]:
        words = text.split()
        if not words:
            return ()
        step = (end - start) / len(words)
        return tuple(
            WordTiming(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words)
        )

    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        self.calls.append(0.0)
        index = len(self.calls) - 1
        finished = False
        try:
            if self.streaming:
                async for transcript in self._stream(audio, index):
                    yield transcript
            else:
                position = 0.0
                async for chunk in audio:
                    position += len(_checked_pcm(chunk, self.sample_rate, "FakeSTT")) / 2
                    self.calls[index] = position / self.sample_rate
                    if self.error is not None and self.calls[index] >= self.error_at:
                        raise self.error
                if self.final_delay:
                    await anyio.sleep(self.final_delay)
                end = self.calls[index]
                text = self._next_text()
                yield Transcript("final", text, 0.0, end, self._words(text, 0.0, end))
            finished = True
            self.completed += 1
        finally:
            if not finished and self.error is None:
                self.cancelled += 1

    async def _stream(
        self, audio: AsyncIterator[AudioChunk], index: int
    ) -> AsyncIterator[Transcript]:
        gate = _EnergyGate(self.sample_rate, self.threshold, self.min_silence, 20.0)
        shown = 0

        async def finalise(end: float) -> AsyncIterator[Transcript]:
            if self.final_delay:
                await anyio.sleep(self.final_delay)
            start = gate.speech_start
            text = self._next_text()
            yield Transcript("final", text, start, end, self._words(text, start, end), True)
            yield Transcript("speech_ended", start=end, end=end)

        async for chunk in audio:
            events = gate.feed(_checked_pcm(chunk, self.sample_rate, "FakeSTT"))
            self.calls[index] = gate.position
            if self.error is not None and gate.position >= self.error_at:
                raise self.error
            for event in events:
                if event.kind == "speech_started":
                    shown = 0
                    yield Transcript("speech_started", start=event.at, end=event.at)
                else:
                    async for transcript in finalise(event.at):
                        yield transcript
            if gate.in_speech:
                n = len(self.finals)
                upcoming = (
                    self.transcripts[n] if n < len(self.transcripts) else f"utterance {n + 1}"
                ).split()
                heard = gate.last_loud_end - gate.speech_start
                count = min(len(upcoming), int(heard * self.words_per_second))
                if count > shown:
                    shown = count
                    yield Transcript(
                        "interim", " ".join(upcoming[:count]), gate.speech_start, gate.position
                    )
        for event in gate.finish():
            async for transcript in finalise(event.at):
                yield transcript


# -- conformance checks for STT and VAD providers --------------------------------------------------


async def audio_feed(
    pcm: bytes,
    sample_rate: int,
    *,
    chunk_ms: float = 20.0,
    pause_at: float | None = None,
    resume: anyio.Event | None = None,
) -> AsyncGenerator[AudioChunk, None]:
    """Mono PCM16 ``pcm`` as ``chunk_ms`` chunks, as fast as they are taken; at ``pause_at``
    seconds of audio it waits for ``resume`` (a stretch in which no audio flows)."""
    step = 2 * round(sample_rate * chunk_ms / 1000)
    for i in range(0, len(pcm), step):
        if pause_at is not None and resume is not None and i >= pause_at * sample_rate * 2:
            await resume.wait()
            pause_at = None
        yield AudioChunk(pcm[i : i + step], sample_rate)
        await anyio.lowlevel.checkpoint()


async def collect_transcripts(stt: Any, audio: AsyncIterator[AudioChunk]) -> list[Transcript]:
    """Every transcript of one ``stt.transcribe(audio)`` call, the call closed however it ends."""
    out: list[Transcript] = []
    async with aclosing(stt.transcribe(audio)) as transcripts:
        async for transcript in transcripts:
            out.append(transcript)
    return out


class _Feed:
    """Feeds chunks to a provider in order and records how far it read."""

    def __init__(self, chunks: Sequence[AudioChunk], *, pace: float = 0.0) -> None:
        self.chunks = list(chunks)
        self.pace = pace
        self.given = 0
        self.exhausted = False
        self.closed = False
        self.reading = anyio.Event()

    async def __call__(self) -> AsyncGenerator[AudioChunk, None]:
        try:
            for chunk in self.chunks:
                if self.pace:
                    await anyio.sleep(self.pace)
                else:
                    await anyio.lowlevel.checkpoint()
                self.given += 1
                if self.given >= 3:
                    self.reading.set()
                yield chunk
            self.exhausted = True
        finally:
            self.closed = True


def _split(
    audio: Sequence[AudioChunk] | AudioChunk, rate: int, chunk_ms: float
) -> list[AudioChunk]:
    """``audio`` as mono ``rate`` Hz chunks of ``chunk_ms`` (resampled with soxr if needed)."""
    chunks = [audio] if isinstance(audio, AudioChunk) else list(audio)
    data = b""
    from avatarkit.audio import Resampler, to_mono

    resamplers: dict[int, Resampler] = {}
    for chunk in chunks:
        mono = to_mono(chunk)
        if mono.sample_rate == rate:
            data += mono.data
            continue
        resampler = resamplers.setdefault(mono.sample_rate, Resampler(mono.sample_rate, rate))
        data += resampler.process(mono).data
    for resampler in resamplers.values():
        data += resampler.flush().data
    step = max(2, round(rate * chunk_ms / 1000) * 2)
    return [AudioChunk(data[i : i + step], rate) for i in range(0, len(data), step)]


def _normalise_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _check_transcript(item: Any, duration: float, slack: float) -> None:
    assert isinstance(item, Transcript), f"transcribe yielded {type(item).__name__}, not Transcript"
    assert item.kind in ("interim", "final", "speech_started", "speech_ended"), (
        f"unknown transcript kind {item.kind!r}"
    )
    assert isinstance(item.text, str), "Transcript.text must be a str"
    for name in ("start", "end"):
        value = getattr(item, name)
        if value is not None:
            assert isinstance(value, int | float), f"Transcript.{name} must be a number"
            assert -1e-6 <= value <= duration + slack, (
                f"Transcript.{name}={value} is outside the {duration:.2f} s of audio given"
            )
    if item.start is not None and item.end is not None:
        assert item.start <= item.end + 1e-6, f"Transcript start {item.start} > end {item.end}"
    for word in item.words:
        assert isinstance(word, WordTiming), "Transcript.words must hold WordTiming"
        assert word.start <= word.end + 1e-6, f"word {word.word!r} starts after it ends"
        assert word.start >= -1e-6, f"word {word.word!r} starts before the audio"
        assert word.end <= duration + slack, (
            f"word {word.word!r} ends at {word.end} s, after the {duration:.2f} s of audio"
        )


async def check_stt(
    stt: Any,
    audio: Sequence[AudioChunk] | AudioChunk,
    *,
    expect: Sequence[str] = (),
    chunk_ms: float = 20.0,
    pace: float = 0.0,
    patience: float = 60.0,
) -> str:
    """Check that ``stt`` follows the STT contract on ``audio``; returns the final text.

    ``audio`` (any rate or channels; converted to what the STT asks for) is fed in ``chunk_ms``
    chunks, ``pace`` seconds apart. Every item is a valid :class:`~avatarkit.Transcript` inside
    the audio's time span; the STT reads its input to the end and its iterator then ends; a
    non-streaming STT yields at least one ``final``; the finals contain each word of ``expect``
    (case and punctuation ignored); empty audio ends cleanly; abandoning a call midway (what
    the session does when it closes) does not raise; ``close`` is idempotent and
    cancellation-safe. Start the provider yourself if it needs starting.
    """
    from avatarkit.providers import stt_sample_rate, stt_streams

    rate = stt_sample_rate(stt)
    chunks = _split(audio, rate, chunk_ms)
    duration = sum(c.duration for c in chunks)
    streaming = stt_streams(stt)
    finals: list[str] = []
    feed = _Feed(chunks, pace=pace)
    with anyio.fail_after(patience):
        source = feed()
        stream = stt.transcribe(source)
        try:
            async for item in stream:
                _check_transcript(item, duration, slack=0.5)
                if item.kind == "final":
                    finals.append(item.text)
        finally:
            await _aclose(stream)
            await _aclose(source)
    assert feed.exhausted, (
        f"transcribe ended after reading {feed.given} of {len(chunks)} chunks; it must read "
        "its audio to the end"
    )
    if not streaming:
        assert finals, "a non-streaming STT must yield at least one final transcript"
    text = " ".join(t.strip() for t in finals if t.strip())
    heard = set(_normalise_words(text))
    missing = [w for w in expect if not set(_normalise_words(w)) <= heard]
    assert not missing, f"final transcript {text!r} lacks {missing}"

    with anyio.fail_after(patience):  # no audio at all
        source = _Feed([])()
        stream = stt.transcribe(source)
        try:
            async for item in stream:
                _check_transcript(item, 0.0, slack=0.5)
        finally:
            await _aclose(stream)
            await _aclose(source)

    await _abandon_midway(lambda f: stt.transcribe(f), chunks, patience, "transcribe")
    await _close_twice_and_cancelled(stt, "stt")
    return text


async def _abandon_midway(
    call: Callable[[AsyncIterator[AudioChunk]], Any],
    chunks: Sequence[AudioChunk],
    patience: float,
    name: str,
) -> None:
    """Start ``call`` over slow audio, cancel it once it has read a few chunks, close it."""
    feed = _Feed(chunks, pace=0.01)
    source = feed()
    stream = call(source)

    async def consume() -> None:
        async for _ in stream:
            pass

    try:
        with anyio.fail_after(patience):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                with anyio.move_on_after(patience / 2):
                    await feed.reading.wait()
                tg.cancel_scope.cancel()
            try:
                await _aclose(stream)
            finally:
                await _aclose(source)
    except Exception as exc:
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        raise AssertionError(f"{name} raised {exc!r} when abandoned midway") from exc


async def check_vad(
    vad: Any,
    audio: Sequence[AudioChunk] | AudioChunk,
    *,
    utterances: int | None = None,
    chunk_ms: float = 20.0,
    patience: float = 60.0,
) -> list[SpeechEvent]:
    """Check that ``vad`` follows the VAD contract on ``audio``; returns its events.

    Events are :class:`~avatarkit.SpeechEvent` that alternate starting with
    ``speech_started``, end closed (``speech_ended`` last), never go back in time, lie inside
    the audio; with ``utterances`` the number of speech stretches must match. The VAD reads its
    input to the end; empty audio yields nothing; abandoning midway does not raise; ``close``
    is idempotent and cancellation-safe.
    """
    from avatarkit.providers import vad_sample_rate

    rate = vad_sample_rate(vad)
    chunks = _split(audio, rate, chunk_ms)
    duration = sum(c.duration for c in chunks)
    events: list[SpeechEvent] = []
    feed = _Feed(chunks)
    with anyio.fail_after(patience):
        source = feed()
        stream = vad.detect(source)
        try:
            async for event in stream:
                assert isinstance(event, SpeechEvent), (
                    f"detect yielded {type(event).__name__}, not SpeechEvent"
                )
                expected = "speech_started" if len(events) % 2 == 0 else "speech_ended"
                assert event.kind == expected, (
                    f"event {len(events)} is {event.kind!r}; expected {expected!r} "
                    "(events must alternate, starting with speech_started)"
                )
                assert -1e-6 <= event.at <= duration + 0.05, (
                    f"{event.kind} at {event.at} s is outside the {duration:.2f} s of audio"
                )
                if events:
                    assert event.at >= events[-1].at - 1e-6, "speech events go back in time"
                events.append(event)
        finally:
            await _aclose(stream)
            await _aclose(source)
    assert feed.exhausted, f"detect stopped reading after {feed.given} of {len(chunks)} chunks"
    assert len(events) % 2 == 0, "the last speech was never closed with speech_ended"
    if utterances is not None:
        found = len(events) // 2
        pairs = zip(events[::2], events[1::2], strict=True)
        spans = [(round(a.at, 2), round(b.at, 2)) for a, b in pairs]
        assert found == utterances, f"found {found} utterances {spans}, expected {utterances}"
    with anyio.fail_after(patience):
        source = _Feed([])()
        stream = vad.detect(source)
        try:
            extra = [event async for event in stream]
        finally:
            await _aclose(stream)
            await _aclose(source)
        assert not extra, f"detect yielded {extra} for no audio"
    await _abandon_midway(lambda f: vad.detect(f), chunks, patience, "detect")
    await _close_twice_and_cancelled(vad, "vad")
    return events


# -- a loopback HTTP server for provider tests -----------------------------------------------------


class ClientGone(Exception):
    """Raised inside a :class:`Responder` when the client closed the connection."""


@dataclass(frozen=True)
class ReceivedRequest:
    """One request a :class:`LoopbackServer` received (header names lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class Responder:
    """Writes one response, on the server's thread, the way a real service would.

    A handler either calls :meth:`send` once, or :meth:`start`, then :meth:`write` / :meth:`sse`
    any number of times, then :meth:`end` (or :meth:`cut` to drop the connection mid-body, as a
    crashed server does). Writing after the client went away raises :class:`ClientGone`, which
    the server records as a disconnect.
    """

    def __init__(self, server: LoopbackServer, handler: BaseHTTPRequestHandler) -> None:
        self.server = server
        self._handler = handler
        if "chunked" in handler.headers.get("transfer-encoding", "").lower():
            body, complete = _read_chunked(handler.rfile)
            self.incomplete = not complete
        else:
            length = int(handler.headers.get("content-length") or 0)
            body = handler.rfile.read(length) if length else b""
            #: the client left while sending its body (e.g. cancelled mid-request)
            self.incomplete = len(body) < length
        self.request = ReceivedRequest(
            handler.command,
            handler.path,
            {k.lower(): v for k, v in handler.headers.items()},
            body,
        )
        self._streaming = False
        self.finished = False

    def _raw(self, data: bytes) -> None:
        try:
            self._handler.wfile.write(data)
        except OSError as exc:  # BrokenPipe, ConnectionReset: the client closed
            raise ClientGone(str(exc)) from exc

    def _head(self, status: int, headers: Mapping[str, str]) -> None:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(
        self,
        status: int = 200,
        body: bytes | str | Mapping[str, Any] | list[Any] = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A complete response with a ``content-length``; a mapping or list is sent as JSON."""
        hdrs = dict(headers or {})
        if isinstance(body, Mapping | list):
            body = json.dumps(body)
            hdrs.setdefault("content-type", "application/json")
        data = body.encode() if isinstance(body, str) else body
        hdrs["content-length"] = str(len(data))
        self._head(status, hdrs)
        self._raw(data)
        self.finished = True

    def start(self, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        """Begin a streamed (chunked) response."""
        self._head(status, {**(headers or {}), "transfer-encoding": "chunked"})
        self._streaming = True

    def write(self, data: bytes | str) -> None:
        """Send one chunk of a streamed response, immediately."""
        chunk = data.encode() if isinstance(data, str) else data
        if chunk:
            self._raw(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def sse(self, data: str | Mapping[str, Any], event: str | None = None) -> None:
        """Send one server-sent event (a mapping is sent as JSON)."""
        text = json.dumps(data) if isinstance(data, Mapping) else data
        frame = f"event: {event}\n" if event else ""
        frame += "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"
        self.write(frame)

    def end(self) -> None:
        """Finish a streamed response."""
        self._raw(b"0\r\n\r\n")
        self.finished = True

    def cut(self) -> None:
        """Drop the connection without finishing the response, as a crashed server would."""
        self._handler.close_connection = True
        with suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_RDWR)
        self.finished = True

    def client_gone(self) -> bool:
        """Whether the client has closed its end (it sends nothing while awaiting a reply)."""
        conn = self._handler.connection
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def pause(self, seconds: float) -> None:
        """Wait like a slow server; raises :class:`ClientGone` as soon as the client leaves."""
        deadline = time.monotonic() + seconds
        while True:
            if self.client_gone():
                raise ClientGone("client closed the connection while the server waited")
            left = deadline - time.monotonic()
            if left <= 0 or self.server._stopping.wait(min(left, 0.005)):
                return


@dataclass
class ResponseGate:
    """Holds a streamed response after its first piece until the test has received that piece.

    Proves that a provider hands pieces on as they arrive, without timing anything: the handler
    calls :meth:`wait` after writing the first piece, the test calls :meth:`open` once the
    provider yielded it, and :attr:`server_finished_first` is then ``False``. If the provider
    buffers, the test never sees the piece, the gate gives up after ``within`` seconds and
    :attr:`server_finished_first` is ``True``.
    """

    within: float = 5.0
    opened: threading.Event = field(default_factory=threading.Event)
    #: ``None`` until :meth:`wait` returned; then whether it gave up waiting for :meth:`open`.
    server_finished_first: bool | None = None

    def open(self) -> None:
        """Called by the test: the first piece has arrived."""
        self.opened.set()

    def wait(self, r: Responder) -> None:
        """Called by the handler: wait for :meth:`open` (raises :class:`ClientGone` if the
        client leaves meanwhile)."""
        deadline = time.monotonic() + self.within
        while not self.opened.is_set() and time.monotonic() < deadline:
            r.pause(0.005)
        self.server_finished_first = not self.opened.is_set()


Handler = Callable[[Responder], None]


def _read_chunked(rfile: Any) -> tuple[bytes, bool]:
    """A request body sent with ``transfer-encoding: chunked``, and whether it was complete."""
    body = b""
    while True:
        line = rfile.readline()
        if not line:
            return body, False
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline().strip():  # trailers, then the blank line
                pass
            return body, True
        data = rfile.read(size)
        body += data
        if len(data) < size:
            return body, False
        rfile.readline()  # the CRLF after each chunk


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose responses are written by ``handler``.

    Every request is kept in :attr:`requests`; a response the client abandoned is kept in
    :attr:`disconnects`; an exception raised by the handler is kept in :attr:`errors` and
    re-raised when the :func:`loopback_server` block exits, so a broken fake cannot pass quietly.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[ReceivedRequest] = []
        self.disconnects: list[ReceivedRequest] = []
        self.errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._httpd = _LoopbackHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    async def wait_for_disconnects(self, count: int = 1, *, within: float = 5.0) -> bool:
        """Wait until ``count`` responses were abandoned by the client, at most ``within``
        seconds; returns whether they were."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.disconnects) >= count, within)

        return await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        responder = Responder(self, handler)
        self.requests.append(responder.request)
        try:
            if responder.incomplete:
                raise ClientGone("the client left while sending its request")
            self.handler(responder)
        except ClientGone:
            with self._changed:
                self.disconnects.append(responder.request)
                self._changed.notify_all()
            handler.close_connection = True
        except Exception as exc:
            self.errors.append(exc)
            handler.close_connection = True
            if not responder.finished:
                with suppress(ClientGone):
                    responder.send(599, f"loopback handler raised {exc!r}")
        else:
            if not responder.finished:
                self.errors.append(AssertionError("handler returned without a response"))
                handler.close_connection = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            for conn in self._connections:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()  # joins the handler threads
        self._thread.join()


class _LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # joined by server_close, so no thread outlives the test
    block_on_close = True


def _handler_class(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            with suppress(OSError):
                super().finish()

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:  # the connection was closed under us (client left, server stopping)
                self.close_connection = True

        def _dispatch(self) -> None:
            server._serve(self)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Handler


@contextmanager
def loopback_server(handler: Handler) -> Iterator[LoopbackServer]:
    """Run a :class:`LoopbackServer` in a thread for the block, then stop it.

    Works the same under asyncio and trio, since the server runs on its own thread::

        def handler(r: Responder) -> None:
            r.start(200, {"content-type": "text/event-stream"})
            r.sse({"hello": "world"})
            r.end()

        with loopback_server(handler) as server:
            ...  # point the SDK's base_url at server.url
    """
    server = LoopbackServer(handler)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    if server.errors:
        raise server.errors[0]


# -- WebSocket services ----------------------------------------------------------------------------


@dataclass
class FakeWebSocketConnection:
    """One WebSocket a :class:`LoopbackWebSocketServer` accepted, and what crossed it."""

    index: int
    #: The request path, query included.
    path: str
    #: The handshake's headers, names lower-cased.
    headers: dict[str, str]
    #: The audio the service took from the client on this connection.
    audio: bytearray = field(default_factory=bytearray)
    #: Client messages kept for assertions, in order.
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Messages the service sent, in order.
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: How it ended: "client" (closed by the client), "dropped" (the TCP connection broke or
    #: was cut), "frozen" (held without a word), or what the fake sets.
    ended: str | None = None
    #: Held half-open: reads nothing and answers no ping.
    frozen: bool = False
    #: WebSocket pings received from the client.
    pings: int = 0

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def param(self, name: str) -> str | None:
        """The last value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class LinkFaults:
    """Network faults a :class:`LoopbackWebSocketServer` can stage; change them before (or while)
    a client connects."""

    #: Cut the TCP connection (no close frame) once a connection received this much audio (s)...
    drop_after_audio: float | None = None
    #: ...on this many connections (the first ones).
    drops: int = 1
    #: Answer every handshake after the first connection with 503 (a lasting outage).
    refuse_reconnects: bool = False
    #: Stop reading and answering pings (a half-open connection) once a connection received
    #: this much audio (s), on the first ``drops`` connections.
    freeze_after_audio: float | None = None

    def due(self, conn: FakeWebSocketConnection, sample_rate: int) -> str | None:
        """``"frozen"`` or ``"dropped"`` when ``conn``'s audio (PCM16 at ``sample_rate``) has
        reached a staged fault, else None."""
        if conn.index >= self.drops:
            return None
        heard = len(conn.audio)
        freeze, drop = self.freeze_after_audio, self.drop_after_audio
        if freeze is not None and heard >= freeze * sample_rate * 2:
            return "frozen"
        if drop is not None and heard >= drop * sample_rate * 2:
            return "dropped"
        return None


@dataclass(frozen=True)
class Refusal:
    """A handshake a :class:`LoopbackWebSocketServer` answers with an HTTP error."""

    status: int
    #: The JSON body.
    body: Mapping[str, Any]
    #: Extra response headers (Content-Type and Content-Length are set).
    headers: Sequence[tuple[str, str]] = ()


class LoopbackWebSocketServer:
    """A WebSocket service fake on 127.0.0.1, for testing a plugin against the real protocol.

    Runs ``websockets``' threaded server (the ``testing`` extra of a plugin that uses it) in the
    background, so asyncio and trio tests alike can use it: ``with Fake() as fake:``. A subclass
    speaks the protocol: :meth:`refuse` judges each handshake, :meth:`new_connection` makes the
    record of an accepted one and :meth:`converse` serves it (returning, or the client leaving,
    ends it). Every handshake is kept in :attr:`handshakes` (path, headers, status), every
    connection in :attr:`connections`; :meth:`freeze` and :meth:`cut` stage network failures.
    """

    def __init__(self) -> None:
        from websockets.sync.server import ServerConnection, serve

        fake = self

        class _Connection(ServerConnection):
            """Counts pings, and answers none once its connection is frozen."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                protocol_send = self.protocol.send_frame

                def send_frame(frame: Any) -> None:
                    from websockets.frames import Opcode

                    conn = getattr(self, "fake_connection", None)
                    if conn is not None and conn.frozen and frame.opcode is Opcode.PONG:
                        return
                    protocol_send(frame)

                self.protocol.send_frame = send_frame  # type: ignore[method-assign]

            def process_event(self, event: Any) -> None:
                from websockets.frames import Opcode

                conn = getattr(self, "fake_connection", None)
                if getattr(event, "opcode", None) is Opcode.PING and conn is not None:
                    with fake._lock:
                        conn.pings += 1
                super().process_event(event)

        self.stopping = threading.Event()
        self.connections: list[Any] = []
        self.handshakes: list[tuple[str, dict[str, str], int]] = []  # path, headers, status
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._server = serve(
            self._accept,
            "127.0.0.1",
            0,
            process_request=self._handshake,
            compression=None,
            create_connection=_Connection,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Client messages kept on every connection (of one ``type``, or all)."""
        with self._lock:
            return [m for c in self.connections for m in c.received if kind in (None, m["type"])]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        """Poll (bounded) until ``predicate()`` holds: the fake runs in other threads."""
        with anyio.fail_after(seconds):
            while not predicate():  # noqa: ASYNC110 - the state changes in another thread
                await anyio.sleep(0.005)

    # -- the protocol: subclasses ------------------------------------------------------------------

    def refuse(self, path: str, headers: dict[str, str]) -> Refusal | None:
        """How to answer a handshake (``headers`` lower-cased): None accepts it."""
        return None

    def new_connection(
        self, index: int, path: str, headers: dict[str, str]
    ) -> FakeWebSocketConnection:
        """The record of an accepted connection."""
        return FakeWebSocketConnection(index, path, headers)

    def converse(self, ws: Any, conn: Any) -> None:
        """Serve one connection (``ws``: a websockets ``ServerConnection``)."""
        raise NotImplementedError

    # -- staged failures ---------------------------------------------------------------------------

    def freeze(self, ws: Any, conn: FakeWebSocketConnection) -> None:
        """Hold the connection half-open, reading nothing and answering no ping, until the fake
        stops; then cut it."""
        conn.frozen = True
        conn.ended = "frozen"
        ws.socket.settimeout(None)
        while not self.stopping.wait(0.05):
            pass
        ws.socket.shutdown(socket.SHUT_RDWR)  # no closing handshake to wait on

    def cut(self, ws: Any, conn: FakeWebSocketConnection) -> None:
        """Drop the TCP connection with no close frame.

        What was sent before reaches the client, then the end of the stream: the fake reads
        and drops what the client still sends until the client closes. (Closing a socket with
        unread data in it sends a reset, and a reset makes the client's system discard what it
        had received but not yet read: messages sent before the drop would be lost or not
        depending on how busy the machine is.)
        """
        conn.ended = "dropped"
        sock = ws.socket
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                if not sock.recv(65536):
                    break  # the client closed its side
            except TimeoutError:
                continue
            except OSError:
                break

    @staticmethod
    def close_draining(ws: Any, code: int, reason: str = "") -> None:
        """Close ``ws`` with ``code`` as a service does while the client may still be sending.

        The close frame goes out at once and what the client sent meanwhile is read and dropped
        until its close comes back. (websockets' threaded server stops reading once a few
        unread messages wait, so a plain ``close()`` from the handler that reads them would
        miss the client's answer and hold on for the whole close timeout, 10 s.)
        """
        from websockets.exceptions import ConnectionClosed

        closer = threading.Thread(target=ws.close, args=(code, reason), daemon=True)
        closer.start()
        while closer.is_alive():
            try:
                ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except ConnectionClosed:
                break
        closer.join()

    def fail(self, ws: Any, conn: FakeWebSocketConnection, fault: str) -> None:
        """Stage ``fault`` (what :meth:`LinkFaults.due` said) on ``conn``."""
        if fault == "frozen":
            self.freeze(ws, conn)
        else:
            self.cut(ws, conn)

    # -- websockets' hooks -------------------------------------------------------------------------

    def _handshake(self, connection: Any, request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        refusal = self.refuse(request.path, headers)
        with self._lock:
            self.handshakes.append((request.path, headers, refusal.status if refusal else 101))
        if refusal is None:
            return None
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        body = json.dumps(refusal.body)
        return Response(
            refusal.status,
            "Error",
            Headers(
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    *refusal.headers,
                ]
            ),
            body.encode(),
        )

    def _accept(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        request = ws.request
        assert request is not None
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        with self._lock:
            conn = self.new_connection(len(self.connections), request.path, headers)
            self.connections.append(conn)
        ws.fake_connection = conn
        try:
            self.converse(ws, conn)
        except ConnectionClosed:
            conn.ended = conn.ended or "client"
        except OSError:
            conn.ended = conn.ended or "dropped"


# -- incremental TTS -------------------------------------------------------------------------------


class FakeIncrementalTTS(_ToneVoice):
    """An incremental TTS: every pushed word becomes ``ms_per_char`` of tone per character (its
    trailing space included) at once, with a :class:`~avatarkit.providers.WordTiming` per word.

    ``timings=False`` gives audio only (the session then estimates proportionally);
    ``first_audio_delay`` delays the first audio of a stream; ``error`` is raised by iteration
    after ``error_after`` audio chunks. Records every stream's pushed text, flushes and how it
    ended (``completed``, ``cancelled``).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        ms_per_char: float = 10.0,
        timings: bool = True,
        first_audio_delay: float = 0.0,
        error: BaseException | None = None,
        error_after: int = 0,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, ms_per_char=ms_per_char, error=error, error_after=error_after
        )
        self.timings = timings
        self.first_audio_delay = first_audio_delay
        self.streams: list[FakeSpeechStream] = []

    def open_stream(self) -> FakeSpeechStream:
        stream = FakeSpeechStream(self)
        self.streams.append(stream)
        return stream


class FakeSpeechStream:
    """One stream of :class:`FakeIncrementalTTS` (see there)."""

    def __init__(self, tts: FakeIncrementalTTS) -> None:
        self._tts = tts
        self.pushed: list[str] = []
        self.flushes = 0
        self.ended = False
        self.completed = False
        self.cancelled = False
        self._send, self._receive = anyio.create_memory_object_stream[Any](math.inf)
        self._seconds = 0.0
        self._chunks = 0
        self._delayed = False

    @property
    def text(self) -> str:
        return "".join(self.pushed)

    async def __aenter__(self) -> FakeSpeechStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.completed:
            self.cancelled = True
        self._send.close()
        self._receive.close()

    async def push(self, text: str) -> None:
        if self.ended:
            raise RuntimeError("push after end")
        self.pushed.append(text)
        tts = self._tts
        for match in re.finditer(r"\S+\s*", text):
            chars = len(match.group())
            duration = tts._duration(chars)
            word = match.group().strip()
            if tts.timings:
                speaking = tts._duration(len(word))
                self._send.send_nowait(WordTiming(word, self._seconds, self._seconds + speaking))
            self._send.send_nowait(AudioChunk(tts._tone(chars), tts.sample_rate))
            self._seconds += round(duration * tts.sample_rate) / tts.sample_rate

    async def flush(self) -> None:
        self.flushes += 1

    async def end(self) -> None:
        self.ended = True
        self._send.close()

    def __aiter__(self) -> FakeSpeechStream:
        return self

    async def __anext__(self) -> AudioChunk | WordTiming:
        tts = self._tts
        if not self._delayed and tts.first_audio_delay:
            await anyio.sleep(tts.first_audio_delay)
        self._delayed = True
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            self.completed = True
            raise StopAsyncIteration from None
        if isinstance(item, AudioChunk):
            if tts.error is not None and self._chunks >= tts.error_after:
                raise tts.error
            self._chunks += 1
        return item  # type: ignore[no-any-return]


async def check_incremental_tts(
    tts: Any,
    text: str = "Hello there, this is a test. And a second sentence.",
    *,
    patience: float = 30.0,
) -> list[AudioChunk | WordTiming]:
    """Check that ``tts`` (an :class:`~avatarkit.providers.IncrementalTTS`) speaks ``text`` fed
    word by word with a flush at each sentence end; returns what it yielded.

    Audio is valid PCM at one rate; word timings, if any, are in order, within the audio and
    match ``text``'s words; leaving a second stream after its first item does not raise; ``close``
    is idempotent and cancellation-safe.
    """
    from avatarkit.providers import tts_capabilities

    assert tts_capabilities(tts).incremental, f"{tts!r} has no open_stream()"
    items: list[AudioChunk | WordTiming] = []
    with anyio.fail_after(patience):
        await _maybe_start(tts)
        async with tts.open_stream() as stream:
            for word in tokens(text):
                await stream.push(word if word.endswith(" ") else word + " ")
                if word.rstrip().endswith((".", "!", "?")):
                    await stream.flush()
            await stream.end()
            async for item in stream:
                items.append(item)
        audio = [i for i in items if isinstance(i, AudioChunk)]
        assert audio, "no audio"
        rates = {c.sample_rate for c in audio}
        assert len(rates) == 1, f"audio at several rates: {rates}"
        assert all(len(c.data) % (2 * c.channels) == 0 for c in audio), "partial samples"
        seconds = sum(c.duration for c in audio)
        timings = [i for i in items if isinstance(i, WordTiming)]
        if timings:
            assert [t.word for t in timings] == text.split(), "timings do not match the words"
            for a, b in itertools.pairwise(timings):
                assert a.start <= a.end <= b.start + 1e-3, f"timings out of order: {a}, {b}"
            assert timings[-1].end <= seconds + 0.05, "a timing beyond the audio"
        async with tts.open_stream() as stream:
            await stream.push(text)
            await stream.end()
            async for _ in stream:
                break
    await _close_twice_and_cancelled(tts, "TTS")
    return items


async def _maybe_start(provider: object) -> None:
    start = getattr(provider, "start", None)
    if start is not None:
        await start()
