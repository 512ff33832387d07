"""The media clock: video frames are cut from the audio sample count, never from wall time.

Frame ``n`` shows samples ``[n * rate // fps, (n + 1) * rate // fps)``, so after any amount of
audio the frame count and the sample count agree to within one sample: audio and video cannot
drift apart, however long the session.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameClock"]


@dataclass(frozen=True, slots=True)
class FrameClock:
    """Maps between audio sample positions and video frame numbers."""

    sample_rate: int
    fps: int

    def frame_start(self, n: int) -> int:
        """First sample shown by frame ``n``."""
        return n * self.sample_rate // self.fps

    def frames_complete(self, samples: int) -> int:
        """How many frames ``samples`` of audio cover entirely (largest ``k`` with
        ``frame_start(k) <= samples``)."""
        # k * rate // fps <= samples  <=>  k * rate < (samples + 1) * fps
        return ((samples + 1) * self.fps - 1) // self.sample_rate

    def frames_to_cover(self, samples: int) -> int:
        """Fewest frames whose samples reach at least ``samples`` (for padding at the end)."""
        n = self.frames_complete(samples)
        return n if self.frame_start(n) >= samples else n + 1

    def seconds(self, samples: int) -> float:
        """Media time of a sample position."""
        return samples / self.sample_rate
