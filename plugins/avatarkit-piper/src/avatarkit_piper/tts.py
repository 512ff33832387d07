"""The ``piper`` TTS: offline neural speech, streamed phrase by phrase from a worker thread.

Synthesis is CPU-bound and blocking, so it runs in a plain thread that hands each phrase's
audio to the event loop through a memory stream. The async side only slices and yields, so
the session stays responsive; on cancellation or an early ``break`` the generator sets a flag
the worker checks between phrases, so at most the phrase in flight is finished after a cancel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import numpy as np
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import ValidationError

from avatarkit.errors import ConfigError, ProviderError
from avatarkit.providers import AudioChunk
from avatarkit_piper.options import PiperTTSOptions
from avatarkit_piper.phrases import split_phrases
from avatarkit_piper.voices import VoiceInfo, VoiceOptionError, load_voice, run_lock

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

__all__ = ["PiperTTS"]

logger = logging.getLogger(__name__)

PROVIDER = "piper"
CHUNK_SECONDS = 0.1
"""Audio is yielded in pieces this long, so a renderer can cut an utterance finely."""


def _describe_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    """The first error's message and the option it is about."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, VoiceOptionError):
        return str(cause), cause.field
    return str(error["msg"]).removeprefix("Value error, "), field


class PiperTTS:
    """Offline neural text-to-speech with a Piper voice (the bundled one by default).

    Args are the fields of :class:`~avatarkit_piper.options.PiperTTSOptions`; they are checked
    here, so a bad voice path fails at construction with a :class:`~avatarkit.ConfigError`.
    The voice itself is loaded by :meth:`start` (or the first :meth:`synthesize`), once per
    process for all instances using the same files.
    """

    def __init__(
        self,
        voice: str | Path | None = None,
        *,
        voice_config: str | Path | None = None,
        rate: float = 1.0,
        sentence_silence: float = 0.0,
        speaker: int | str | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        volume: float = 1.0,
        split_phrases: bool = True,
        threads: int | None = None,
    ) -> None:
        try:
            self.options = PiperTTSOptions(
                voice=voice,  # pydantic converts str to Path
                voice_config=voice_config,
                rate=rate,
                sentence_silence=sentence_silence,
                speaker=speaker,
                noise_scale=noise_scale,
                noise_w_scale=noise_w_scale,
                volume=volume,
                split_phrases=split_phrases,
                threads=threads,
            )
        except ValidationError as exc:
            message, field = _describe_validation_error(exc)
            raise ConfigError(f"piper: {message}", field=field) from None
        self.info: VoiceInfo = self.options.info
        self.sample_rate: int = self.info.sample_rate
        self._voice: PiperVoice | None = None
        self._workers: dict[threading.Thread, threading.Event] = {}  # worker -> its stop flag
        self._workers_lock = threading.Lock()  # workers remove themselves from their thread

    def __repr__(self) -> str:
        return f"PiperTTS(voice={self.info.name!r}, sample_rate={self.sample_rate})"

    @property
    def voice(self) -> PiperVoice | None:
        """The loaded (shared) Piper voice, or None before :meth:`start`."""
        return self._voice

    async def start(self) -> None:
        """Load the voice off the event loop (seconds the first time, then shared)."""
        await self._load()

    async def close(self) -> None:
        """Stop every worker of this instance before its next phrase (streams left open by a
        caller included); the shared voice stays loaded for other instances."""
        with self._workers_lock:
            stops = list(self._workers.values())
        for stop in stops:
            stop.set()

    async def _load(self) -> PiperVoice:
        if self._voice is None:
            # abandon_on_cancel: a cancelled start returns at once; the load completes in the
            # background and lands in the cache for the next caller.
            self._voice = await anyio.to_thread.run_sync(
                lambda: load_voice(self.info, threads=self.options.threads),
                abandon_on_cancel=True,
            )
        return self._voice

    def _synthesis_config(self) -> SynthesisConfig:
        from piper import SynthesisConfig

        return SynthesisConfig(
            speaker_id=self.options.speaker_id(),
            length_scale=self.options.length_scale,
            noise_scale=self.options.noise_scale,
            noise_w_scale=self.options.noise_w_scale,
        )

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Speak ``text``: 16-bit mono PCM at the voice's rate, streamed phrase by phrase."""
        if not text.strip():
            return
        voice = await self._load()
        send, receive = anyio.create_memory_object_stream[np.ndarray[Any, Any] | Exception](
            max_buffer_size=float("inf")
        )
        stop = threading.Event()
        worker = threading.Thread(
            target=self._produce,
            args=(voice, text, send, anyio.lowlevel.current_token(), stop),
            name=f"avatarkit-piper-{self.info.name}",
            daemon=True,
        )
        with self._workers_lock:
            self._workers[worker] = stop
        step = max(1, round(self.sample_rate * CHUNK_SECONDS))
        try:
            worker.start()
            async with receive:
                async for item in receive:
                    if isinstance(item, Exception):
                        raise item
                    for start in range(0, len(item), step):
                        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancel lands at once
                        yield AudioChunk(item[start : start + step].tobytes(), self.sample_rate)
        finally:
            stop.set()  # the worker stops before its next phrase

    def _produce(
        self,
        voice: PiperVoice,
        text: str,
        send: MemoryObjectSendStream[np.ndarray[Any, Any] | Exception],
        token: anyio.lowlevel.EventLoopToken,
        stop: threading.Event,
    ) -> None:
        """Worker thread: phonemize, synthesise each phrase, hand int16 audio to the loop."""

        def deliver(item: np.ndarray[Any, Any] | Exception) -> bool:
            try:
                anyio.from_thread.run_sync(send.send_nowait, item, token=token)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.RunFinishedError):
                return False  # the consumer went away
            return True

        try:
            syn_config = self._synthesis_config()
            lock = run_lock(voice)
            silence = np.zeros(round(self.options.sentence_silence * self.sample_rate), np.int16)
            peak = 1e-4  # running peak: normalise like Piper without level jumps between phrases
            for sentence in voice.phonemize(text):
                pieces = split_phrases(sentence) if self.options.split_phrases else [sentence]
                spoke = False
                for phonemes in pieces:
                    if stop.is_set():
                        return
                    ids = voice.phonemes_to_ids(phonemes)
                    with lock:  # one model run at a time per voice: see run_lock
                        if stop.is_set():  # cancelled while waiting for our turn
                            return
                        audio = voice.phoneme_ids_to_audio(ids, syn_config)
                    assert isinstance(audio, np.ndarray)
                    peak = max(peak, float(np.max(np.abs(audio))) if audio.size else 0.0)
                    gain = 32767.0 * self.options.volume / peak
                    pcm = np.clip(audio * gain, -32767, 32767).astype("<i2")
                    if pcm.size and not deliver(pcm):
                        return
                    spoke = spoke or bool(pcm.size)
                if spoke and silence.size and not stop.is_set() and not deliver(silence):
                    return
        except Exception as exc:
            logger.exception("Piper synthesis failed")
            deliver(
                ProviderError(f"synthesis failed: {type(exc).__name__}: {exc}", provider=PROVIDER)
            )
        finally:
            try:  # ends the consumer's loop; close() must run on the event loop thread
                anyio.from_thread.run_sync(send.close, token=token)
            except anyio.RunFinishedError:
                send.close()  # no loop left to race with
            with self._workers_lock:
                self._workers.pop(threading.current_thread(), None)
