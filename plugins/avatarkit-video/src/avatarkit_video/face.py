"""The drawn avatar: a friendly cartoon face in plain numpy, no image library needed.

The still parts (background, shoulders, head, hair, brows, nose) are drawn once per head offset
and cached; each frame only repaints the small region holding the eyes and the mouth.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import numpy as np

from avatarkit_video.animation import Pose
from avatarkit_video.draw import Canvas, hex_color

__all__ = ["Avatar", "DrawnFace"]

SKIN = hex_color("#f1c29a")
SKIN_SHADE = hex_color("#dca27f")
HAIR = hex_color("#4a3128")
SHIRT = hex_color("#3d6e8f")
EYE_WHITE = hex_color("#fbfaf7")
IRIS = hex_color("#4a6fa5")
PUPIL = hex_color("#141414")
OUTLINE = hex_color("#3a2a25")
LIP = hex_color("#c4545a")
LIP_LINE = hex_color("#7a2a30")
MOUTH_INSIDE = hex_color("#2a0b10")
TEETH = hex_color("#f2efe8")
TONGUE = hex_color("#b5474f")
BLUSH = hex_color("#f09a8a")
BG_TOP = np.array(hex_color("#2f4160"), np.float32)
BG_BOTTOM = np.array(hex_color("#18202f"), np.float32)


class Avatar(Protocol):
    """Draws one video frame for a pose."""

    width: int
    height: int

    def draw(self, pose: Pose) -> np.ndarray:
        """An ``(height, width, 3)`` uint8 RGB frame."""
        ...

    def mouth_region(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` in frame pixels that holds the mouth in every pose."""
        ...


class DrawnFace:
    """A cartoon head and shoulders on a gradient, sized to the frame."""

    _CACHE = 48  # still images kept (one per integer head offset seen recently)

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.unit = min(width, height) / 512.0  # pose offsets are in 512-pixel units
        s = min(width, height)
        self.size = s
        self.cx = width / 2
        self.cy = height * 0.47
        self._background = self._gradient()
        self._still: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        # The region repainted every frame: eyes to chin, plus head motion.
        margin = 8 * self.unit + 2
        x0 = self.cx - 0.2 * s - margin
        x1 = self.cx + 0.2 * s + margin
        y0 = self.cy - 0.09 * s - margin
        y1 = self.cy + 0.26 * s + margin
        self._feature_box = (
            max(0, int(y0)),
            max(0, int(x0)),
            min(height, int(np.ceil(y1))),
            min(width, int(np.ceil(x1))),
        )

    def mouth_region(self) -> tuple[int, int, int, int]:
        s = self.size
        margin = 8 * self.unit
        x0 = self.cx - 0.11 * s - margin
        y0 = self.cy + 0.15 * s - 0.09 * s - margin
        w = 0.22 * s + 2 * margin
        h = 0.18 * s + 2 * margin
        return int(x0), int(y0), int(np.ceil(w)), int(np.ceil(h))

    def draw(self, pose: Pose) -> np.ndarray:
        ox = round(pose.dx * self.unit)
        oy = round(pose.dy * self.unit)
        frame = self._still_image(ox, oy).copy()
        y0, x0, y1, x1 = self._feature_box
        canvas = Canvas(frame[y0:y1, x0:x1], origin=(y0, x0))
        self._eyes(canvas, ox, oy, pose)
        self._mouth(canvas, ox, oy, pose)
        frame[y0:y1, x0:x1] = canvas.result()
        return frame

    # -- the still image -------------------------------------------------------------------------

    def _gradient(self) -> np.ndarray:
        t = np.linspace(0.0, 1.0, self.height, dtype=np.float32)[:, None, None]
        column = BG_TOP * (1 - t) + BG_BOTTOM * t
        return np.broadcast_to(column, (self.height, self.width, 3)).astype(np.float32)

    def _still_image(self, ox: int, oy: int) -> np.ndarray:
        key = (ox, oy)
        image = self._still.get(key)
        if image is None:
            image = self._draw_still(ox, oy)
            self._still[key] = image
            if len(self._still) > self._CACHE:
                self._still.popitem(last=False)
        else:
            self._still.move_to_end(key)
        return image

    def _draw_still(self, ox: int, oy: int) -> np.ndarray:
        s = self.size
        c = Canvas(self._background)
        cx, cy = self.cx + ox, self.cy + oy
        # Shoulders breathe half as much as the head moves.
        c.fill(
            c.ellipse(self.cx + ox * 0.3, self.cy + 0.6 * s + oy * 0.5, 0.42 * s, 0.22 * s), SHIRT
        )
        c.fill(c.ellipse(cx, cy + 0.27 * s, 0.075 * s, 0.13 * s), SKIN_SHADE)
        for side in (-1, 1):
            c.fill(c.ellipse(cx + side * 0.245 * s, cy + 0.02 * s, 0.04 * s, 0.065 * s), SKIN_SHADE)
        c.fill(c.ellipse(cx, cy, 0.25 * s, 0.31 * s, soft=1.5), SKIN)
        # A cap of hair, rounded off above the ears, with a side-swept fringe.
        hair = c.intersect(
            c.ellipse(cx, cy - 0.05 * s, 0.27 * s, 0.3 * s),
            c.ellipse(cx, cy - 0.16 * s, 0.32 * s, 0.2 * s, soft=2.0),
        )
        hair = c.subtract(
            hair, c.ellipse(cx + 0.03 * s, cy + 0.07 * s, 0.215 * s, 0.25 * s, soft=2.0)
        )
        c.fill(hair, HAIR)
        for side in (-1, 1):
            ex, ey = cx + side * 0.095 * s, cy - 0.02 * s
            brow = c.subtract(
                c.ellipse(ex, ey - 0.055 * s, 0.06 * s, 0.035 * s),
                c.ellipse(ex, ey - 0.045 * s, 0.066 * s, 0.033 * s),
            )
            c.fill(c.rows_above(brow, ey - 0.06 * s), HAIR)
            c.fill(
                c.ellipse(cx + side * 0.15 * s, cy + 0.1 * s, 0.045 * s, 0.03 * s, soft=6),
                BLUSH,
                0.35,
            )
        c.fill(c.ellipse(cx, cy + 0.075 * s, 0.028 * s, 0.016 * s, soft=2), SKIN_SHADE)
        return c.result()

    # -- what moves ------------------------------------------------------------------------------

    def _eyes(self, c: Canvas, ox: int, oy: int, pose: Pose) -> None:
        s = self.size
        for side in (-1, 1):
            ex, ey = self.cx + ox + side * 0.095 * s, self.cy + oy - 0.02 * s
            rx, ry = 0.05 * s, 0.034 * s * pose.eyes_open
            if pose.eyes_open < 0.15:
                c.fill(c.ellipse(ex, ey, rx, max(1.0, 0.004 * s)), OUTLINE)
                continue
            c.fill(c.ellipse(ex, ey, rx + 0.005 * s, ry + 0.005 * s), OUTLINE)
            white = c.ellipse(ex, ey, rx, ry)
            c.fill(white, EYE_WHITE)
            ix = ex + pose.gaze_x * 0.018 * s
            iy = ey + pose.gaze_y * 0.01 * s
            c.fill(c.intersect(c.ellipse(ix, iy, 0.025 * s, 0.025 * s), white), IRIS)
            c.fill(c.intersect(c.ellipse(ix, iy, 0.012 * s, 0.012 * s), white), PUPIL)
            c.fill(
                c.intersect(c.ellipse(ix + 0.008 * s, iy - 0.009 * s, 0.006 * s, 0.006 * s), white),
                EYE_WHITE,
            )

    def _mouth(self, c: Canvas, ox: int, oy: int, pose: Pose) -> None:
        s = self.size
        mx, my = self.cx + ox, self.cy + oy + 0.15 * s
        opening = pose.mouth_open
        w = 0.075 * s * (0.85 + 0.4 * pose.mouth_wide - 0.2 * opening * (1 - pose.mouth_wide))
        if opening < 0.04:
            c.fill(c.ellipse(mx, my, w, 0.012 * s), LIP)
            c.fill(c.ellipse(mx, my, w * 0.92, max(0.8, 0.0035 * s)), LIP_LINE)
            return
        h = 0.004 * s + 0.045 * s * opening * (1.1 - 0.3 * pose.mouth_wide)
        c.fill(c.ellipse(mx, my, w + 0.013 * s, h + 0.014 * s), LIP)
        inside = c.ellipse(mx, my, w, h)
        c.fill(inside, MOUTH_INSIDE)
        c.fill(c.rows_above(inside, my - h * 0.5), TEETH)
        c.fill(c.intersect(c.ellipse(mx, my + h * 0.85, w * 0.6, h * 0.55), inside), TONGUE)
