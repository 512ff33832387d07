"""What the renderer pulls for one sentence on the audio route: the sentence's pipe, joined into
the renderer's blocks or resampled to its rate, each chunk counted as said when taken.

One object per sentence rather than an async generator with closures: a speaking session holds
one of these for seconds, and a generator with its closures and their cells was a dozen objects
the garbage collector's young collections walked again and again (with a thousand speaking
sessions, tens of thousands of objects per collection). The speak timeout, when set, follows
what the renderer takes; waiting for the TTS is not the renderer's time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

import anyio

from avatarkit._audio_pipe import AudioPipe
from avatarkit._spoken import Meter
from avatarkit.providers import AudioChunk

if TYPE_CHECKING:
    from avatarkit.audio import RateConverter

__all__ = ["BATCH_SECONDS", "Delivery", "join_buffered"]

BATCH_SECONDS = 0.1  # resampling: what is buffered, up to this, goes through soxr at once


class _FirstSpeech(Protocol):
    first_speech_at: float | None


class Delivery:
    """The async iterator a renderer's ``speak`` is given for one sentence."""

    __slots__ = (
        "_closed",
        "_converter",
        "_ended",
        "_limit",
        "_pending",
        "block",
        "meter",
        "pipe",
        "scope",
        "turn",
    )

    def __init__(
        self,
        pipe: AudioPipe,
        meter: Meter,
        turn: _FirstSpeech,
        *,
        converter: RateConverter | None,
        block: float | None,
        limit: float | None,
    ) -> None:
        self.pipe = pipe
        self.meter = meter
        self.turn = turn
        self.block = block
        # With a speak timeout (``limit``), the scope the renderer's speak() runs in: its
        # deadline follows what the renderer takes.
        self.scope = (
            None if limit is None else anyio.CancelScope(deadline=anyio.current_time() + limit)
        )
        self._limit = limit or 0.0
        self._converter = converter  # None: the renderer takes any rate
        self._pending: deque[AudioChunk] | None = None  # the rest of one conversion
        self._ended = False  # the pipe has no more audio (what is pending is the last)
        self._closed = False

    def __aiter__(self) -> Delivery:
        return self

    async def __anext__(self) -> AudioChunk:
        pipe = self.pipe
        while True:
            if self._pending:
                return self._taken(self._pending.popleft())
            if self._closed:
                raise StopAsyncIteration
            if self._ended:
                self.meter.exhausted = True  # the renderer read the audio to its end
                raise StopAsyncIteration
            chunk = pipe.pop()
            if chunk is None:
                if pipe.finished:
                    self._ended = True
                    if self._converter is not None:
                        self._pending = deque(self._converter.finish())
                    continue
                await self._wait()
                continue
            converter = self._converter
            if converter is None or converter.passes(chunk):
                block = self.block
                return self._taken(join_buffered(pipe, chunk, block) if block else chunk)
            converted = converter.convert(join_buffered(pipe, chunk, self.block or BATCH_SECONDS))
            self._pending = deque(converted)

    def _taken(self, chunk: AudioChunk) -> AudioChunk:
        """Count what the renderer takes; the speak timeout follows it."""
        turn = self.turn
        if turn.first_speech_at is None and chunk.data:
            turn.first_speech_at = time.perf_counter()
        meter = self.meter
        meter.delivered += chunk.duration
        if self.scope is not None:
            self.scope.deadline = anyio.current_time() + self._limit + meter.delivered
        return chunk

    async def _wait(self) -> None:
        scope = self.scope
        if scope is None:
            await self.pipe.wait()
            return
        scope.deadline = math.inf  # waiting for the TTS is not the renderer's time
        try:
            await self.pipe.wait()
        finally:
            scope.deadline = anyio.current_time() + self._limit + self.meter.delivered

    async def aclose(self) -> None:
        """The renderer stopped taking audio: nothing more is handed out."""
        self._closed = True
        self._pending = None


def join_buffered(pipe: AudioPipe, chunk: AudioChunk, seconds: float) -> AudioChunk:
    """``chunk`` joined with the chunks already buffered behind it in the same format, up to
    ``seconds`` in all (never waiting for more): one resampling call, or one chunk for a
    renderer that takes audio in blocks, instead of several."""
    total = chunk.duration
    if total >= seconds or type(chunk) is not AudioChunk:
        return chunk  # a subclass may carry more than audio: handed on whole
    per_second = 2 * chunk.channels * chunk.sample_rate
    parts = [chunk.data]
    while True:
        more = pipe.peek_data(chunk.sample_rate, chunk.channels)
        if more is None or total + len(more) / per_second > seconds:
            break
        parts.append(pipe.pop_data())
        total += len(more) / per_second
    if len(parts) == 1:
        return chunk
    return AudioChunk(b"".join(parts), chunk.sample_rate, chunk.channels)
