"""The render thread: owns the :class:`MediaWriter` and applies commands in order.

Drawing and H.264 encoding are CPU-bound, so they run here and never block the event loop.
With ``realtime`` the media timeline is pinned to the wall clock: between utterances the thread
keeps appending idle frames (silence) up to "now", and each utterance starts at the moment it
began. Without it, utterances follow each other separated by ``pause`` seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatarkit_video.media import MediaWriter
from avatarkit_video.transcript import Cue, spoken_text

__all__ = ["RenderThread"]

logger = logging.getLogger(__name__)

_IDLE_POLL = 0.1  # seconds between idle top-ups in realtime mode
_SYNC_EVERY = 0.1  # seconds between WAV header updates while busy (a crash loses no more)


@dataclass(frozen=True, slots=True)
class _Begin:
    utterance: int
    wall: float


@dataclass(frozen=True, slots=True)
class _Audio:
    utterance: int
    pcm: np.ndarray


@dataclass(frozen=True, slots=True)
class _End:
    utterance: int
    text: str | None
    interrupted: bool
    expected: int | None = None  # samples the whole utterance would have had (when cut)


@dataclass(frozen=True, slots=True)
class _Close:
    wall: float


_Command = _Begin | _Audio | _End | _Close


class RenderThread:
    """Feeds a media writer from a queue on a thread of its own."""

    def __init__(
        self,
        open_writer: Callable[[], MediaWriter],
        *,
        realtime: bool,
        pause: float,
        origin: float,
    ) -> None:
        self._open_writer = open_writer
        self.realtime = realtime
        self.pause = pause
        self.origin = origin  # wall time (time.monotonic) of media time 0 in realtime mode
        self.cues: list[Cue] = []
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._writer: MediaWriter | None = None
        self._ready = threading.Event()
        self._progress = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._dropped_through = -1  # audio of utterances up to this number is discarded
        self._utterance: int | None = None
        self._utterance_start: int | None = None
        self._thread = threading.Thread(target=self._run, name="avatarkit-video", daemon=True)

    # -- called from the event loop's thread -----------------------------------------------------

    def start(self) -> None:
        """Start the thread and wait until the files are open (raises what opening raised)."""
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            self._thread.join()
            raise self.error

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def seconds(self) -> float:
        """Media time rendered so far."""
        writer = self._writer
        return writer.seconds if writer is not None else 0.0

    @property
    def backlog(self) -> int:
        """Commands submitted and not yet applied."""
        return self._submitted - self._done

    def begin(self, utterance: int) -> None:
        self._put(_Begin(utterance, time.monotonic()))

    def audio(self, utterance: int, pcm: np.ndarray) -> None:
        self._put(_Audio(utterance, pcm))

    def end(
        self, utterance: int, text: str | None, *, interrupted: bool, expected: int | None = None
    ) -> None:
        self._put(_End(utterance, text, interrupted, expected))

    def drop(self, utterance: int) -> None:
        """Discard audio of ``utterance`` (and earlier) not rendered yet."""
        self._dropped_through = max(self._dropped_through, utterance)

    def close(self) -> None:
        """Ask the thread to finish the files (idempotent); :meth:`join` waits for it."""
        if self._thread.is_alive():
            self._put(_Close(time.monotonic()))

    def _put(self, command: _Command) -> None:
        with self._progress:
            self._submitted += 1
        self._queue.put(command)

    # -- blocking waits: call through anyio.to_thread ---------------------------------------------

    def wait_until(self, backlog: int) -> None:
        """Block until at most ``backlog`` commands are pending or the thread has stopped."""
        with self._progress:
            while self._submitted - self._done > backlog and self._thread.is_alive():
                self._progress.wait(0.5)

    def join(self) -> None:
        self._thread.join()

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._writer = self._open_writer()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(self._writer)
        except BaseException as exc:
            logger.exception("video renderer: rendering failed")
            self.error = exc
        finally:
            try:
                self._writer.close()
            except Exception as exc:
                logger.exception("video renderer: could not finish the files")
                self.error = self.error or exc
            with self._progress:
                self._done = self._submitted
                self._progress.notify_all()

    def _loop(self, writer: MediaWriter) -> None:
        synced = time.monotonic()
        while True:
            try:
                command = self._queue.get(timeout=_IDLE_POLL if self.realtime else None)
            except queue.Empty:
                if self._utterance is None:
                    self._catch_up(writer, time.monotonic())
                    writer.sync()
                continue
            try:
                if isinstance(command, _Close):
                    self._finish(writer, command)
                    return
                self._apply(writer, command)
                now = time.monotonic()
                if self._queue.empty() or now - synced >= _SYNC_EVERY:
                    writer.sync()
                    synced = now
            finally:
                with self._progress:
                    self._done += 1
                    self._progress.notify_all()

    def _apply(self, writer: MediaWriter, command: _Command) -> None:
        if isinstance(command, _Begin):
            if self.realtime:
                self._catch_up(writer, command.wall)
            else:
                writer.silence(round(self.pause * writer.sample_rate))
            self._utterance = command.utterance
            self._utterance_start = writer.samples
        elif isinstance(command, _Audio):
            if command.utterance > self._dropped_through and command.utterance == self._utterance:
                writer.write(command.pcm)
        elif isinstance(command, _End):
            start = self._utterance_start
            if start is not None and writer.samples > start:
                text = command.text or ""
                if command.interrupted and command.expected is not None:
                    text = spoken_text(text, writer.samples - start, command.expected)
                cue = Cue(
                    start / writer.sample_rate,
                    writer.seconds,
                    text,
                    interrupted=command.interrupted,
                )
                self.cues.append(cue)
                if text:
                    writer.cue(cue)
            self._utterance = None
            self._utterance_start = None

    def _catch_up(self, writer: MediaWriter, wall: float) -> None:
        """Idle frames up to ``wall`` (whole frames only, so speech starts on a frame edge)."""
        target = writer.clock.frame_start(
            writer.clock.frames_complete(round((wall - self.origin) * writer.sample_rate))
        )
        if target > writer.samples:
            writer.silence(target - writer.samples)

    def _finish(self, writer: MediaWriter, command: _Close) -> None:
        if self.realtime:
            self._catch_up(writer, command.wall)
        elif writer.samples:
            writer.silence(round(self.pause * writer.sample_rate))
