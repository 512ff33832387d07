"""From audio to a pose, frame by frame: mouth from the speech itself, blinks and idle motion.

The mouth opening follows the loudness (RMS in dB) of the samples each frame shows, smoothed
with a fast attack and a slower release as a jaw moves; the zero-crossing rate, a cheap stand-in
for a viseme classifier, makes hissy sounds (s, f, ee) wide and flat and low voiced sounds
(o, u) round. Blinks, gaze shifts, breathing and a slight sway run on the media clock from a
seeded generator, so a render is deterministic and silence never looks frozen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

__all__ = ["Animator", "Pose"]

_FLOOR_DB = -42.0  # at or below: mouth closed
_FULL_DB = -12.0  # at or above: mouth fully open
_ATTACK_S = 0.025
_RELEASE_S = 0.05
_BLINK_S = 0.16


@dataclass(frozen=True, slots=True)
class Pose:
    """What one frame shows. Openings are 0..1; offsets are in pixels of a 512-pixel frame."""

    mouth_open: float = 0.0
    mouth_wide: float = 0.5
    eyes_open: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0


class Animator:
    """Turns the samples of consecutive frames into poses. Not thread-safe; one per render."""

    def __init__(self, *, sample_rate: int, fps: int, seed: int = 0) -> None:
        self.sample_rate = sample_rate
        self.fps = fps
        self._dt = 1.0 / fps
        self._attack = 1.0 - math.exp(-self._dt / _ATTACK_S)
        self._release = 1.0 - math.exp(-self._dt / _RELEASE_S)
        self._rng = random.Random(seed)
        self._open = 0.0
        self._wide = 0.5
        self._frame = 0
        self._next_blink = self._rng.uniform(1.0, 3.0)
        self._next_gaze = self._rng.uniform(1.5, 3.5)
        self._gaze = (0.0, 0.0)
        self._phase = self._rng.uniform(0, 2 * math.pi)

    @staticmethod
    def level(samples: np.ndarray) -> tuple[float, float]:
        """Loudness in dBFS and zero-crossing rate (crossings per sample) of int16 samples."""
        if samples.size == 0:
            return -120.0, 0.0
        x = samples.astype(np.float32) / 32768.0
        rms = float(np.sqrt(np.mean(x * x)))
        db = 20.0 * math.log10(rms) if rms > 1e-6 else -120.0
        signs = np.signbit(x)
        zcr = float(np.count_nonzero(signs[1:] != signs[:-1])) / max(1, x.size - 1)
        return db, zcr

    def next(self, samples: np.ndarray) -> Pose:
        """The pose of the next frame, which shows ``samples`` (int16, mono)."""
        t = self._frame * self._dt
        self._frame += 1
        db, zcr = self.level(samples)
        target = min(1.0, max(0.0, (db - _FLOOR_DB) / (_FULL_DB - _FLOOR_DB))) ** 1.5
        rate = self._attack if target > self._open else self._release
        self._open += (target - self._open) * rate
        if self._open < 0.02:
            self._open = 0.0
        wide_target = min(1.0, max(0.0, (zcr - 0.03) / 0.12)) if target > 0 else 0.5
        self._wide += (wide_target - self._wide) * self._release

        eyes = self._eyes(t)
        gaze = self._gaze_at(t)
        # Breathing (about 15 a minute) and a slower sway; a nod that follows speech energy.
        dy = 2.2 * math.sin(2 * math.pi * t / 4.1 + self._phase) + 3.0 * self._open
        dx = 1.6 * math.sin(2 * math.pi * t / 7.3 + 2 * self._phase)
        return Pose(
            mouth_open=self._open,
            mouth_wide=self._wide,
            eyes_open=eyes,
            dx=dx,
            dy=dy,
            gaze_x=gaze[0],
            gaze_y=gaze[1],
        )

    def _eyes(self, t: float) -> float:
        if t >= self._next_blink + _BLINK_S:
            # Blinks every 2 to 6 seconds, sometimes twice in a row.
            double = self._rng.random() < 0.15
            self._next_blink = t + (0.25 if double else self._rng.uniform(2.0, 6.0))
        into = t - self._next_blink
        if 0 <= into < _BLINK_S:
            return abs(1.0 - 2.0 * into / _BLINK_S)  # close, then open again
        return 1.0

    def _gaze_at(self, t: float) -> tuple[float, float]:
        if t >= self._next_gaze:
            centre = self._rng.random() < 0.5
            self._gaze = (
                (0.0, 0.0)
                if centre
                else (self._rng.uniform(-1.0, 1.0), self._rng.uniform(-0.5, 0.5))
            )
            self._next_gaze = t + self._rng.uniform(1.2, 4.0)
        return self._gaze
