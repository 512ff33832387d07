"""The ``video`` renderer: an avatar that speaks audio into an MP4, a WAV and a transcript."""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from avatarkit.audio import resample_stream
from avatarkit.errors import ProviderError, SessionError
from avatarkit.providers import AudioChunk
from avatarkit.text import estimate_speech_seconds
from avatarkit_video.checks import check_output_dir, validate_options
from avatarkit_video.face import Avatar, DrawnFace
from avatarkit_video.media import MediaWriter, OutputFiles
from avatarkit_video.naming import existing, release, reserve, taken_error
from avatarkit_video.portrait import PortraitFace, load_image
from avatarkit_video.transcript import Cue
from avatarkit_video.worker import RenderThread

__all__ = ["VideoRenderer"]

logger = logging.getLogger(__name__)

_PROVIDER = "video"
_MAX_BACKLOG = 64  # commands queued for the render thread before speak waits for it


def _stop(thread: RenderThread) -> None:
    """Finish the files if the renderer was dropped or the interpreter exits without close()."""
    thread.close()
    thread.join()


class VideoRenderer:
    """Renders a talking avatar to files: ``NAME.mp4`` (H.264 + AAC, with the transcript as a
    mov_text subtitle track), ``NAME.wav`` (everything spoken) and ``NAME.vtt`` (the transcript).

    The mouth follows the audio frame by frame; video frames are cut from the audio sample count,
    so sound and picture stay in sync however long the session. Options are those of
    :class:`~avatarkit_video.options.VideoRendererOptions`; they are checked here (output folder
    writable, portrait readable) so that bad ones fail before anything starts.
    """

    def __init__(self, **options: Any) -> None:
        opts = validate_options(options)
        self.options = opts
        self.sample_rate: int = opts.sample_rate
        self.realtime = opts.realtime
        check_output_dir(opts.output_dir)
        self.avatar: Avatar
        if opts.portrait is not None:
            assert opts.mouth_box is not None  # the options model requires it
            image = load_image(opts.portrait.expanduser())
            self.avatar = PortraitFace(
                opts.width, opts.height, image, opts.mouth_box, list(opts.eye_boxes)
            )
        else:
            self.avatar = DrawnFace(opts.width, opts.height)
        name = opts.name or datetime.now().strftime("avatar-%Y%m%d-%H%M%S")
        self.files = OutputFiles.in_folder(opts.output_dir.expanduser(), name)
        if opts.name is not None and not opts.overwrite and (found := existing(self.files)):
            raise taken_error(self.files, found)  # early; start() claims the name atomically
        self._thread: RenderThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock: anyio.Lock | None = None
        self._scope: anyio.CancelScope | None = None
        self._caption: str | None = None
        self._utterance = 0
        self._closed = False
        self._close_done: anyio.Event | None = None  # made by start(): needs a running loop

    def __repr__(self) -> str:
        return f"VideoRenderer(video={str(self.files.video)!r})"

    @property
    def cues(self) -> list[Cue]:
        """One entry per utterance rendered so far (media times; text from :meth:`caption`)."""
        return list(self._thread.cues) if self._thread is not None else []

    @property
    def duration(self) -> float:
        """Seconds of media rendered so far."""
        return self._thread.seconds if self._thread is not None else 0.0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the output files and start the render thread."""
        if self._thread is not None:
            return
        if self._closed:
            raise SessionError("the video renderer is closed")
        opts = self.options
        self._close_done = anyio.Event()
        try:
            self.files = await anyio.to_thread.run_sync(
                functools.partial(
                    reserve,
                    self.files.video.parent,
                    self.files.video.stem,
                    numbered=opts.name is None,
                    overwrite=opts.overwrite,
                )
            )
        except OSError as exc:
            raise ProviderError(
                f"cannot create the output files in {str(self.files.video.parent)!r}: {exc}",
                provider=_PROVIDER,
            ) from exc
        self._lock = anyio.Lock()
        thread = RenderThread(
            lambda: MediaWriter(
                self.files,
                avatar=self.avatar,
                fps=opts.fps,
                sample_rate=opts.sample_rate,
                crf=opts.crf,
                subtitles=opts.subtitles,
                seed=opts.seed,
                title=self.files.video.stem,
            ),
            realtime=opts.realtime,
            pause=opts.pause,
            origin=time.monotonic(),
        )
        try:
            await anyio.to_thread.run_sync(thread.start)
        except Exception as exc:
            if not opts.overwrite:
                release(self.files)
            raise ProviderError(
                f"cannot create the output files in {str(self.files.video.parent)!r}: {exc}",
                provider=_PROVIDER,
            ) from exc
        self._thread = thread
        self._finalizer = weakref.finalize(self, _stop, thread)
        logger.info("video renderer: recording to %s", self.files.video)

    async def close(self) -> None:
        """Finish the last frame, flush the encoders and close the files (idempotent; runs to
        the end even when cancelled). A second close() while one runs returns when the files
        are finished too."""
        if self._closed:
            if self._close_done is not None:
                with anyio.CancelScope(shield=True):
                    await self._close_done.wait()
            return
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        thread = self._thread
        if thread is None:
            if self._close_done is not None:
                self._close_done.set()
            return
        try:
            with anyio.CancelScope(shield=True):
                thread.close()
                await anyio.to_thread.run_sync(thread.join)
        finally:
            if self._close_done is not None:
                self._close_done.set()
        if self._finalizer is not None:
            self._finalizer.detach()
        if thread.error is not None:
            raise ProviderError(
                f"the recording may be incomplete: {thread.error}", provider=_PROVIDER
            ) from thread.error
        logger.info("video renderer: wrote %s", ", ".join(str(p) for p in self.files.all()))

    # -- speaking --------------------------------------------------------------------------------

    def caption(self, text: str) -> None:
        """The text of the next utterance, for the transcript (the session calls this)."""
        self._caption = text

    async def interrupt(self) -> None:
        """Cut the current utterance where it is: audio not yet rendered is dropped."""
        if self._scope is not None:
            self._scope.cancel()
        if self._thread is not None:
            self._thread.drop(self._utterance)

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        """Render one utterance; returns when it is rendered (at the pace of speech if
        ``realtime``) or cut short by :meth:`interrupt`."""
        thread = self._running()
        assert self._lock is not None
        async with self._lock:
            self._utterance += 1
            number = self._utterance
            text, self._caption = self._caption, None
            began: list[bool] = []  # set by _render once audio went out
            received = [0, 0]  # by _render: samples received; 1 once the stream ended
            scope = anyio.CancelScope()
            self._scope = scope
            if self._closed:
                scope.cancel()
            try:
                with scope:
                    await self._render(thread, number, audio, began, received)
            finally:
                self._scope = None
                if began:
                    thread.end(
                        number,
                        text,
                        interrupted=scope.cancel_called,
                        expected=self._expected(text, received) if scope.cancel_called else None,
                    )
            if not self.realtime:
                await anyio.to_thread.run_sync(thread.wait_until, 0, abandon_on_cancel=True)
            self._raise_if_failed(thread)

    async def _render(
        self,
        thread: RenderThread,
        number: int,
        audio: AsyncIterator[AudioChunk],
        began: list[bool],
        received: list[int],
    ) -> None:
        rate = self.sample_rate
        step = max(1, rate // self.options.fps)  # realtime pacing: one frame of audio at a time
        began_at = 0.0
        sent = 0
        stream = resample_stream(audio, rate, mono=True)
        try:
            async for chunk in stream:
                pcm = np.frombuffer(chunk.data, dtype="<i2")
                if not pcm.size:
                    continue
                received[0] += pcm.size
                if not began:
                    thread.begin(number)
                    began.append(True)
                    began_at = time.monotonic()
                if not self.realtime:
                    thread.audio(number, pcm)
                    sent += pcm.size
                else:
                    for start in range(0, pcm.size, step):
                        await _sleep_until(began_at + sent / rate)
                        piece = pcm[start : start + step]
                        thread.audio(number, piece)
                        sent += piece.size
                if thread.backlog > _MAX_BACKLOG:  # the machine renders slower than this comes
                    await anyio.to_thread.run_sync(
                        thread.wait_until, _MAX_BACKLOG // 4, abandon_on_cancel=True
                    )
                self._raise_if_failed(thread)
            received[1] = 1
        finally:
            await _aclose(stream)
            await _aclose(audio)
        if self.realtime and began:
            await _sleep_until(began_at + sent / rate)

    def _expected(self, text: str | None, received: list[int]) -> int:
        """Samples the cut utterance would have had: all it received if its stream had ended,
        else at least the text's estimated speaking time (what the transcript cue keeps)."""
        if received[1] or not text:
            return received[0]
        return max(received[0], round(estimate_speech_seconds(text) * self.sample_rate))

    def _running(self) -> RenderThread:
        if self._closed:
            raise SessionError("the video renderer is closed")
        if self._thread is None:
            raise SessionError("the video renderer is not started: call start() first")
        self._raise_if_failed(self._thread)
        return self._thread

    @staticmethod
    def _raise_if_failed(thread: RenderThread) -> None:
        if thread.error is not None:
            raise ProviderError(f"rendering failed: {thread.error}", provider=_PROVIDER) from (
                thread.error
            )
        if not thread.alive:
            raise ProviderError("the render thread has stopped", provider=_PROVIDER)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await anyio.sleep(delay)
    else:
        await anyio.lowlevel.checkpoint()


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
