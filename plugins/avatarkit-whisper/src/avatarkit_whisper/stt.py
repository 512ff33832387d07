"""The ``whisper`` STT: whole utterances transcribed offline by faster-whisper.

Whisper reads an utterance at once (it pads to 30 s windows), so this STT is not streaming:
the session gives it one utterance per call, cut by the VAD. Decoding is CPU-bound and
blocking, so it runs in a worker thread; cancelling the call returns at once and the worker
stops at the next segment boundary (at most one segment of work is wasted).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from avatarkit.errors import AvatarKitError, ProviderError
from avatarkit.providers import AudioChunk, Transcript, WordTiming
from avatarkit_whisper.model import PROVIDER, load_model
from avatarkit_whisper.options import WhisperSTTOptions

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = ["WhisperSTT"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class WhisperSTT:
    """Offline speech to text with Whisper (faster-whisper, CTranslate2 weights).

    Args are the fields of :class:`~avatarkit_whisper.options.WhisperSTTOptions`. The model
    loads in :meth:`start` (or the first call), once per process for the same folder.
    """

    sample_rate = SAMPLE_RATE
    streaming = False

    def __init__(self, **options: Any) -> None:
        self.options = WhisperSTTOptions(**options)
        self._model: WhisperModel | None = None
        self._run_lock = threading.Lock()  # one decode at a time on this instance's model

    def __repr__(self) -> str:
        return f"WhisperSTT(model={str(self.options.model or 'bundled tiny.en')!r})"

    async def start(self) -> None:
        await self._load()

    async def close(self) -> None:
        self._model = None  # the process-wide cache keeps the weights for the next session

    async def _load(self) -> WhisperModel:
        if self._model is None:
            o = self.options
            self._model = await anyio.to_thread.run_sync(
                load_model, o.model, o.compute_type, o.cpu_threads
            )
        return self._model

    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        pcm = bytearray()
        async for chunk in audio:
            if chunk.sample_rate != SAMPLE_RATE or chunk.channels != 1:
                raise ProviderError(
                    f"needs mono audio at {SAMPLE_RATE} Hz, got {chunk.channels} channel(s) at "
                    f"{chunk.sample_rate} Hz",
                    provider=PROVIDER,
                )
            pcm += chunk.data
        duration = len(pcm) / 2 / SAMPLE_RATE
        if not pcm:
            yield Transcript("final", "", 0.0, 0.0)
            return
        model = await self._load()
        stop = threading.Event()
        try:
            text, words, start, end = await anyio.to_thread.run_sync(
                self._decode, model, bytes(pcm), stop, abandon_on_cancel=True
            )
        except AvatarKitError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"transcription failed: {type(exc).__name__}: {exc}", provider=PROVIDER
            ) from exc
        finally:
            stop.set()  # a cancelled call: the worker stops at the next segment
        yield Transcript(
            "final",
            text,
            min(start, duration),
            min(end, duration),
            tuple(w for w in words if w.end <= duration + 0.5),
        )

    def _decode(
        self, model: WhisperModel, pcm: bytes, stop: threading.Event
    ) -> tuple[str, list[WordTiming], float, float]:
        import numpy as np

        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        o = self.options
        texts: list[str] = []
        words: list[WordTiming] = []
        start = end = None
        with self._run_lock:
            segments, _info = model.transcribe(
                samples,
                language=o.language,
                beam_size=o.beam_size,
                word_timestamps=o.word_timestamps,
                initial_prompt=o.initial_prompt,
                condition_on_previous_text=False,
                vad_filter=False,  # the session's VAD already cut the utterance
                without_timestamps=not o.word_timestamps,
            )
            for segment in segments:  # decoding happens while iterating
                if stop.is_set():
                    break
                texts.append(segment.text.strip())
                start = segment.start if start is None else start
                end = segment.end
                for w in segment.words or ():
                    words.append(WordTiming(w.word.strip(), float(w.start), float(w.end)))
        text = " ".join(t for t in texts if t)
        return text, words, float(start or 0.0), float(end or 0.0)
