"""The incremental route: one streaming-TTS stream per turn, fed as the LLM writes.

Used on the audio route when the TTS has ``open_stream`` (:class:`~avatarkit.providers.
IncrementalTTS`). Three parts, as on the sentence path:

* the **producer** (cancelled by ``interrupt()``, with the rest of the turn's paid work) streams
  the LLM through a :class:`~avatarkit.incremental.TextFeeder` and pushes each piece as soon as
  it is safe to speak, with a flush at every sentence end, then ends the stream;
* the **reader** (same scope) takes audio and word timings off the stream;
* the **speaker** hands the audio, resampled, to ``renderer.speak`` in one utterance for the
  whole turn, counting what the renderer takes. Sentences begin (caption, ``SentenceStarted``)
  when the audio of their first word is taken.

What was said is cut at the last word whose audio the renderer took, from the TTS's word
timings (:func:`~avatarkit.incremental.heard_chars`); without timings, in proportion to the
audio taken over the audio of the text pushed so far: once the stream has ended, the audio it
made; before, the larger of that and a generous estimate of the text's length
(:func:`~avatarkit._spoken.speech_seconds_bound`), since text pushed may have no audio yet. Both
err short.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from avatarkit._cleanup import aclose_stream
from avatarkit._secrets import redact_spoken
from avatarkit._spoken import speech_seconds_bound
from avatarkit.errors import ProviderTimeout
from avatarkit.incremental import Piece, TextFeeder, heard_chars
from avatarkit.providers import AudioChunk, WordTiming

if TYPE_CHECKING:
    from avatarkit.session import AvatarSession, _Turn

__all__ = ["speak_incremental"]

_WORD = re.compile(r"\S+")


@dataclass
class _Said:
    """What the turn pushed, what came back, and what the renderer took."""

    feeder: TextFeeder = field(default_factory=TextFeeder)
    ends: list[int] = field(default_factory=list)  # where each sentence ends in feeder.text
    speeches: list[str] = field(default_factory=list)  # each sentence as the sentence path says it
    timings: list[WordTiming] = field(default_factory=list)
    synthesized: float = 0.0  # seconds of audio the TTS produced
    taken: float = 0.0  # seconds of audio the renderer took
    exhausted: bool = False  # the renderer took the audio to its end
    complete: bool = False  # the stream ended: all the text pushed has its audio
    begun: int = 0  # sentences begun
    pushed: int = 0  # characters of feeder.text handed to the stream (pieces run ahead of it)
    first_push: float | None = None  # anyio time of the first piece pushed

    def start_of(self, index: int) -> int:
        return self.ends[index - 1] if index else 0

    def heard(self) -> int:
        """Characters of ``feeder.text`` heard so far."""
        text = self.feeder.text
        if self.exhausted:
            return len(text)
        if self.timings:
            return heard_chars(text, self.timings, self.taken)
        if self.synthesized <= 0:
            return 0
        # No timings: the audio taken over the audio of the text pushed so far. Until the stream
        # ended, some of that text may have no audio yet (a service synthesises in pieces):
        # measured against the audio made alone, the first piece taken would count as all of it.
        whole = self.synthesized
        if not self.complete:
            whole = max(whole, speech_seconds_bound(text))
        end = int(len(text) * min(self.taken / whole, 1.0))
        while end > 0 and end < len(text) and not text[end].isspace():
            end -= 1
        return end

    def starts_at(self, index: int) -> float | None:
        """Seconds into the audio where sentence ``index`` starts, if known yet."""
        first_word = len(_WORD.findall(self.feeder.text[: self.start_of(index)]))
        if self.timings:
            if first_word < len(self.timings):
                return self.timings[first_word].start
            return None
        if not self.feeder.text or self.synthesized <= 0:
            return None
        return self.synthesized * self.start_of(index) / len(self.feeder.text)


async def speak_incremental(session: AvatarSession, turn: _Turn, text: str, use_llm: bool) -> None:
    """Run ``turn`` on the incremental route (see the module docstring)."""
    from avatarkit.session import _Failed

    tts: Any = session.tts
    said = _Said()
    try:
        opening = tts.open_stream()
        stream = await opening.__aenter__()
    except Exception as exc:
        turn.failed = True
        raise _Failed("tts", exc) from exc
    audio_send, audio_receive = anyio.create_memory_object_stream[AudioChunk](math.inf)
    waiting = anyio.CancelScope()  # the speaker's wait for the first audio (tts_first_chunk)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_produce, session, turn, text, use_llm, stream, said, waiting, audio_send)
            await _speak(session, turn, said, audio_receive, waiting)
    except BaseException as exc:
        await _leave(opening, exc)
        raise
    else:
        await _leave(opening, None)
    finally:
        audio_send.close()
        audio_receive.close()


async def _leave(opening: Any, exc: BaseException | None) -> None:
    """Leave the stream's block (closing its connection) however the turn ended."""
    if exc is None:
        await opening.__aexit__(None, None, None)
        return
    try:
        await opening.__aexit__(type(exc), exc, exc.__traceback__)
    except BaseException as error:
        if error is not exc:
            raise


async def _produce(
    session: AvatarSession,
    turn: _Turn,
    text: str,
    use_llm: bool,
    stream: Any,
    said: _Said,
    waiting: anyio.CancelScope,
    audio: MemoryObjectSendStream[AudioChunk],
) -> None:
    """The turn's paid work, in ``turn.producers`` (cancelled by an interrupt): LLM → pieces →
    the stream, and the stream → audio for the speaker."""
    from avatarkit.session import _Failed

    limit = session.timeouts.tts_first_chunk

    async def push(piece: Piece) -> None:
        if turn.stopping:
            return
        try:
            said.pushed += len(piece.text)
            if piece.text:
                await stream.push(piece.text)
                if said.first_push is None:
                    said.first_push = anyio.current_time()
                    if limit is not None:
                        waiting.deadline = said.first_push + limit
            if piece.sentence is not None:
                said.ends.append(said.pushed)
                said.speeches.append(piece.sentence)
                turn.queued += 1
                await stream.flush()
        except Exception as exc:
            turn.failed = True
            raise _Failed("tts", exc) from exc

    async def take(delta: str) -> None:
        for piece in said.feeder.feed(delta):
            await push(piece)

    async def write() -> None:
        if use_llm:
            await session._each_delta(turn, take)
        else:
            await take(redact_spoken(text, session._all_secrets()))
        for piece in said.feeder.finish():
            await push(piece)
        turn.produced = True
        try:
            await stream.end()
        except Exception as exc:
            turn.failed = True
            raise _Failed("tts", exc) from exc

    async def read() -> None:
        async with audio:
            try:
                async for item in stream:
                    if isinstance(item, WordTiming):
                        said.timings.append(item)
                    elif isinstance(item, AudioChunk) and item.data:
                        said.synthesized += item.duration
                        audio.send_nowait(item)
                said.complete = True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the speaker left: the turn is ending
            except Exception as exc:
                turn.failed = True
                raise _Failed("tts", exc) from exc

    with turn.producers:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await write()


async def _speak(
    session: AvatarSession,
    turn: _Turn,
    said: _Said,
    audio: MemoryObjectReceiveStream[AudioChunk],
    waiting: anyio.CancelScope,
) -> None:
    """The whole turn's audio to ``renderer.speak`` as one utterance; sentences begin as their
    audio is taken and end with what was heard of them."""
    from avatarkit.audio import resample_stream
    from avatarkit.session import _Failed, _Sentence

    renderer = session.renderer
    limit = session.timeouts.speak
    scope = anyio.CancelScope(deadline=math.inf if limit is None else anyio.current_time() + limit)
    rate = getattr(renderer, "sample_rate", None)
    resampled = resample_stream(audio, rate if isinstance(rate, int) else None)
    sentences: list[_Sentence] = []

    async def begin_due(upto: float) -> bool:
        """Begin every finished sentence whose audio starts before ``upto`` seconds; False if
        the turn stopped meanwhile (an async caption gives an interrupt time to arrive)."""
        while said.begun < len(said.speeches):
            index = said.begun
            start = said.starts_at(index) if index else 0.0
            if start is None or start >= upto:
                return True
            speech = said.speeches[index]
            sentence = _Sentence(index, speech, speech)
            said.begun += 1
            sentences.append(sentence)
            if not await session._begin_sentence(turn, sentence):
                return False
        return True

    async def delivered() -> AsyncIterator[AudioChunk]:
        while True:
            if limit is not None:
                scope.deadline = math.inf  # waiting for the TTS is not the renderer's time
            try:
                if turn.first_speech_at is None:
                    with waiting:
                        chunk = await resampled.__anext__()
                    if waiting.cancelled_caught:
                        turn.failed = True
                        raise _Failed(
                            "tts",
                            ProviderTimeout(
                                f"no audio within {session.timeouts.tts_first_chunk} s",
                                provider=type(session.tts).__name__,
                            ),
                        )
                else:
                    chunk = await resampled.__anext__()
            except StopAsyncIteration:
                said.exhausted = not turn.stopping and turn.produced
                return
            finally:
                if limit is not None:
                    scope.deadline = anyio.current_time() + limit + said.taken
            if turn.stopping:
                return
            if not await begin_due(said.taken + chunk.duration):
                return
            if turn.first_speech_at is None:
                turn.first_speech_at = time.perf_counter()
                session._set_state("speaking")
            said.taken += chunk.duration
            if limit is not None:
                scope.deadline = anyio.current_time() + limit + said.taken
            yield chunk

    stream = delivered()
    try:
        with scope:
            await session._renderer_call(renderer.speak(stream))
        if scope.cancelled_caught:
            error = ProviderTimeout(
                f"did not finish speaking: no progress for {limit} s beyond the audio's length",
                provider=type(renderer).__name__,
            )
            raise _Failed("renderer", error)
    finally:
        await aclose_stream(stream, session.timeouts.cleanup, renderer)
        await aclose_stream(resampled, session.timeouts.cleanup, renderer)
        _record(session, turn, said, sentences)


def _record(session: AvatarSession, turn: _Turn, said: _Said, sentences: list[Any]) -> None:
    """End every sentence that was heard at all with the words of it that were heard. One whose
    audio was taken before its text was finished (or before the speaker got to begin it) is
    announced now, so every ``SentenceEnded`` has its ``SentenceStarted``."""
    from avatarkit.session import _Sentence

    heard = said.heard()
    text = said.feeder.text
    begun = {s.index: s for s in sentences}
    index = 0
    while True:
        start = said.start_of(index)
        finished = index < len(said.speeches)
        if finished:
            end, speech = said.ends[index], said.speeches[index]
        else:  # the sentence the LLM was still writing
            end, speech = len(text), text[start:].strip()
        if index not in begun and (start >= heard or not speech):
            break
        if index not in begun:
            session._announce_sentence(turn, _Sentence(index, speech, speech))
        words = speech if finished and heard >= end else text[start : min(heard, end)].strip()
        session._record_sentence(turn, _Sentence(index, speech, speech), words)
        if not finished:
            break
        index += 1
