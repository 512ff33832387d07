"""The media timeline: audio samples in, MP4 (H.264 + AAC + mov_text), WAV and WebVTT out.

Everything is driven by the audio: each call appends samples, and every video frame whose
samples are now complete (see :class:`~avatarkit_video.clock.FrameClock`) is animated from those
samples, drawn and encoded. Not thread-safe: one thread owns a writer.

The MP4 is fragmented (``empty_moov`` + ~0.2 s fragments) so that a file whose writer never got
to close, e.g. after a crash or ``kill -9``, still plays up to its last fragment. One side effect:
AAC starts with an encoder delay (1024 samples of priming) that a fragmented MP4 cannot trim with
an edit list, so the muxer shifts every stream by that delay and shows the first video frame
that much longer. Sound and picture keep their relative timing exactly; players that compute an
"average" frame rate from the duration report slightly less than ``fps``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from avatarkit_video.animation import Animator
from avatarkit_video.clock import FrameClock
from avatarkit_video.face import Avatar
from avatarkit_video.transcript import Cue, VttWriter
from avatarkit_video.wav import WavWriter

__all__ = ["MediaWriter", "OutputFiles"]

logger = logging.getLogger(__name__)

_MP4_OPTIONS = {
    # A moov without samples up front, then self-contained fragments of at most 0.2 s.
    "movflags": "empty_moov+default_base_moof+frag_keyframe",
    "frag_duration": "200000",
    # The subtitle track is sparse: do not hold audio and video back waiting for it.
    "max_interleave_delta": "100000",
    "flush_packets": "1",
}
_CHUNK = 1 << 15  # samples per AAC input frame when writing long stretches


@dataclass(frozen=True, slots=True)
class OutputFiles:
    """Where a session's recording goes."""

    video: Path
    audio: Path
    transcript: Path

    @classmethod
    def in_folder(cls, folder: Path, name: str) -> OutputFiles:
        return cls(folder / f"{name}.mp4", folder / f"{name}.wav", folder / f"{name}.vtt")

    def all(self) -> tuple[Path, Path, Path]:
        return (self.video, self.audio, self.transcript)


class MediaWriter:
    """Owns the three output files of one session."""

    def __init__(
        self,
        files: OutputFiles,
        *,
        avatar: Avatar,
        fps: int,
        sample_rate: int,
        crf: int = 23,
        subtitles: bool = True,
        seed: int = 0,
        title: str | None = None,
    ) -> None:
        self.files = files
        self.avatar = avatar
        self.clock = FrameClock(sample_rate, fps)
        self.sample_rate = sample_rate
        self.fps = fps
        self.samples = 0  # audio samples on the timeline
        self.frames = 0  # video frames encoded
        self._animator = Animator(sample_rate=sample_rate, fps=fps, seed=seed)
        self._pending = np.zeros(0, np.int16)  # samples of the frame not yet complete
        self._closed = False
        self._container: Any = None
        self._wav: WavWriter | None = None
        self._vtt: VttWriter | None = None
        try:
            self._open(title, crf, subtitles)
        except BaseException:
            self._close_files()
            raise

    def _open(self, title: str | None, crf: int, subtitles: bool) -> None:
        self._wav = WavWriter(self.files.audio, self.sample_rate)
        self._vtt = VttWriter(self.files.transcript)
        container = av.open(str(self.files.video), "w", format="mp4", options=_MP4_OPTIONS)
        self._container = container
        if title:
            container.metadata["title"] = title
        container.metadata["encoder"] = "avatarkit-video"
        video = container.add_stream(
            "libx264",
            rate=self.fps,
            options={"preset": "veryfast", "tune": "zerolatency", "crf": str(crf)},
        )
        video.width = self.avatar.width
        video.height = self.avatar.height
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = self.fps * 2
        video.time_base = Fraction(1, self.fps)
        audio = container.add_stream("aac", rate=self.sample_rate, layout="mono")
        audio.time_base = Fraction(1, self.sample_rate)
        self._video = video
        self._audio = audio
        self._text: Any = None
        if subtitles:
            text = container.add_mux_stream("mov_text")
            text.time_base = Fraction(1, 1000)
            self._text = text
        self._last_cue_end = 0

    # -- writing ---------------------------------------------------------------------------------

    @property
    def seconds(self) -> float:
        """Length of the timeline so far."""
        return self.samples / self.sample_rate

    def write(self, pcm: np.ndarray) -> None:
        """Append int16 mono samples; encodes every video frame they complete."""
        if self._closed:
            raise ValueError("media writer is closed")
        pcm = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
        for start in range(0, pcm.size, _CHUNK):
            self._write(pcm[start : start + _CHUNK])

    def silence(self, samples: int) -> None:
        """Append ``samples`` of silence (the face idles)."""
        while samples > 0:
            n = min(samples, _CHUNK)
            self._write(np.zeros(n, np.int16))
            samples -= n

    def _write(self, pcm: np.ndarray) -> None:
        if pcm.size == 0:
            return
        assert self._wav is not None
        self._wav.write(pcm.astype("<i2", copy=False).tobytes())
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self.samples
        frame.time_base = Fraction(1, self.sample_rate)
        self._container.mux(self._audio.encode(frame))
        self.samples += pcm.size
        self._pending = np.concatenate((self._pending, pcm)) if self._pending.size else pcm
        done = self.clock.frames_complete(self.samples)
        while self.frames < done:
            # _pending starts at the first sample of frame number self.frames
            length = self.clock.frame_start(self.frames + 1) - self.clock.frame_start(self.frames)
            shown, self._pending = self._pending[:length], self._pending[length:]
            self._encode_frame(shown)

    def _encode_frame(self, samples: np.ndarray) -> None:
        pose = self._animator.next(samples)
        image = self.avatar.draw(pose)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        self._container.mux(self._video.encode(frame))
        self.frames += 1

    def cue(self, cue: Cue) -> None:
        """Add a transcript cue: to the WebVTT file, and to the MP4's subtitle track."""
        assert self._vtt is not None
        self._vtt.write(cue)
        if self._text is None:
            return
        start = max(round(cue.start * 1000), self._last_cue_end)
        end = max(round(cue.end * 1000), start + 1)
        data = " ".join(cue.text.split()).encode("utf-8")[:65535]
        packet = av.Packet(len(data).to_bytes(2, "big") + data)
        packet.stream = self._text
        packet.pts = packet.dts = start
        packet.duration = end - start
        packet.time_base = Fraction(1, 1000)
        self._container.mux(packet)
        self._last_cue_end = end

    def sync(self) -> None:
        """Make the WAV header true for what has been written (the MP4 flushes by itself)."""
        if self._wav is not None:
            self._wav.sync()

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Complete the last frame with silence, flush the encoders, close the files.

        Idempotent; if flushing fails the files are still closed.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.samples == 0:
                self._write(np.zeros(self.clock.frame_start(1), np.int16))
            end = self.clock.frame_start(self.clock.frames_to_cover(self.samples))
            if end > self.samples:
                self._write(np.zeros(end - self.samples, np.int16))
            self._container.mux(self._video.encode(None))
            self._container.mux(self._audio.encode(None))
        finally:
            self._close_files()

    def _close_files(self) -> None:
        errors: list[BaseException] = []
        for closer in (
            getattr(self._container, "close", None),
            getattr(self._wav, "close", None),
            getattr(self._vtt, "close", None),
        ):
            if closer is None:
                continue
            try:
                closer()
            except Exception as exc:  # close the others whatever happens
                errors.append(exc)
        self._closed = True
        if errors:
            raise errors[0]
