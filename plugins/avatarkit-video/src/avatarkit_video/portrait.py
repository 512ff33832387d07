"""A user's portrait as the avatar: the jaw drops with the speech, the eyes blink, the head sways.

The image is decoded and scaled with PyAV (FFmpeg reads PNG, JPEG, WebP...), so no image library
is needed. The mouth opens by pulling the part of the face below the mouth line down (a warp that
fades out towards the chin and the sides) and painting the gap as the inside of a mouth.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

from avatarkit.errors import ConfigError
from avatarkit_video.animation import Pose
from avatarkit_video.draw import Canvas, hex_color
from avatarkit_video.options import Box

__all__ = ["PortraitFace", "load_image"]

_MOTION_MARGIN = 0.04  # the image is scaled this much larger than the frame, room to sway
MOUTH_INSIDE = hex_color("#2a0b10")
TEETH = hex_color("#ebe6dc")


def load_image(path: Path) -> np.ndarray:
    """Decode the first picture of ``path`` to an RGB array; ConfigError if that is impossible."""
    where = f"the portrait {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist or is not a file", field="renderer.portrait")
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{where} cannot be read as an image ({exc}); use a PNG or JPEG file",
            field="renderer.portrait",
        ) from None
    raise ConfigError(
        f"{where} holds no picture; use a PNG or JPEG file", field="renderer.portrait"
    )


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray(
        format="rgb24"
    )


def _check_box(box: Box, field: str, image: np.ndarray) -> None:
    x, y, w, h = box
    height, width = image.shape[:2]
    if x + w > width or y + h > height:
        raise ConfigError(
            f"{list(box)} reaches outside the {width}x{height} portrait",
            field=f"renderer.{field}",
        )


class PortraitFace:
    """Animates a portrait image; the frame shows it scaled to cover, centred."""

    def __init__(
        self,
        width: int,
        height: int,
        image: np.ndarray,
        mouth_box: Box,
        eye_boxes: list[Box] | None = None,
    ) -> None:
        self.width = width
        self.height = height
        eye_boxes = eye_boxes or []
        _check_box(mouth_box, "mouth_box", image)
        for box in eye_boxes:
            _check_box(box, "eye_boxes", image)
        ih, iw = image.shape[:2]
        scale = max(width / iw, height / ih) * (1 + _MOTION_MARGIN)
        sw, sh = max(width + 2, math.ceil(iw * scale)), max(height + 2, math.ceil(ih * scale))
        self._image = _resize(image, sw, sh)
        self._sx, self._sy = sw / iw, sh / ih
        self._base = ((sw - width) // 2, (sh - height) // 2)
        self._room = (
            min(self._base[0], sw - width - self._base[0]),
            min(self._base[1], sh - height - self._base[1]),
        )
        self.unit = min(width, height) / 512.0
        self._mouth = self._scaled(mouth_box)
        self._eyes = [self._scaled(b) for b in eye_boxes]
        x, y, w, h = self._mouth
        bx, by = self._base
        if x + w <= bx or x >= bx + width or y + h <= by or y >= by + height:
            raise ConfigError(
                "the mouth falls outside the part of the portrait the frame "
                f"shows ({width}x{height} of the scaled image); use a frame of similar shape "
                "to the portrait",
                field="renderer.mouth_box",
            )

    def _scaled(self, box: Box) -> tuple[float, float, float, float]:
        x, y, w, h = box
        return x * self._sx, y * self._sy, w * self._sx, h * self._sy

    def mouth_region(self) -> tuple[int, int, int, int]:
        x, y, w, h = self._mouth
        bx, by = self._base
        rx, ry = self._room
        return (
            max(0, int(x - bx - rx)),
            max(0, int(y - by - ry)),
            math.ceil(w + 2 * rx),
            math.ceil(h * 1.6 + 2 * ry),
        )

    def draw(self, pose: Pose) -> np.ndarray:
        rx, ry = self._room
        ox = self._base[0] + max(-rx, min(rx, round(pose.dx * self.unit)))
        oy = self._base[1] + max(-ry, min(ry, round(pose.dy * self.unit)))
        frame = self._image[oy : oy + self.height, ox : ox + self.width].copy()
        self._open_mouth(frame, ox, oy, pose)
        if pose.eyes_open < 1.0:
            for box in self._eyes:
                self._lid(frame, box, ox, oy, pose.eyes_open)
        return frame

    def _open_mouth(self, frame: np.ndarray, ox: int, oy: int, pose: Pose) -> None:
        if pose.mouth_open < 0.02:
            return
        mx, my, mw, mh = self._mouth
        line = my + mh / 2  # mouth line, scaled-image coordinates
        drop = pose.mouth_open * mh * 0.9
        # Warp region: the mouth's width plus a quarter each side, from the line to the chin.
        x0 = int(mx - mw * 0.25)
        x1 = math.ceil(mx + mw * 1.25)
        y0 = int(line)
        y1 = math.ceil(line + mh * 2.2)
        fx0, fx1 = max(x0 - ox, 0), min(x1 - ox, self.width)
        fy0, fy1 = max(y0 - oy, 0), min(y1 - oy, self.height)
        if fx0 >= fx1 or fy0 >= fy1:
            return
        ys = np.arange(fy0, fy1, dtype=np.float32) + oy
        xs = np.arange(fx0, fx1, dtype=np.float32) + ox
        fall_y = np.clip(1.0 - (ys - line) / (y1 - line), 0.0, 1.0)[:, None]
        across = np.clip((xs - x0) / max(1.0, x1 - x0), 0.0, 1.0)
        fall_x = (np.sin(np.pi * across) ** 0.7)[None, :]
        src_y = np.clip(ys[:, None] - drop * fall_y * fall_x, 0, self._image.shape[0] - 1)
        lo = np.floor(src_y).astype(np.int64)
        hi = np.minimum(lo + 1, self._image.shape[0] - 1)
        frac = (src_y - lo)[:, :, None]
        cols = np.broadcast_to(xs.astype(np.int64)[None, :], lo.shape)
        warped = self._image[lo, cols] * (1 - frac) + self._image[hi, cols] * frac
        frame[fy0:fy1, fx0:fx1] = np.clip(warped + 0.5, 0, 255).astype(np.uint8)
        # Paint the gap the warp opened as the inside of the mouth.
        cy0, cy1 = max(int(line - mh) - oy, 0), min(int(line + mh + drop) + 1 - oy, self.height)
        cx0, cx1 = max(int(mx) - ox, 0), min(math.ceil(mx + mw) - ox, self.width)
        if cy0 >= cy1 or cx0 >= cx1:
            return
        canvas = Canvas(frame[cy0:cy1, cx0:cx1], origin=(cy0, cx0))
        cx = mx + mw / 2 - ox
        half_w = mw * 0.4 * (0.85 + 0.3 * pose.mouth_wide)
        inside = canvas.ellipse(cx, line - oy + drop / 2, half_w, drop / 2 + mh * 0.04, soft=1.5)
        canvas.fill(inside, MOUTH_INSIDE)
        canvas.fill(canvas.rows_above(inside, line - oy + drop * 0.12), TEETH, 0.9)
        frame[cy0:cy1, cx0:cx1] = canvas.result()

    def _lid(
        self,
        frame: np.ndarray,
        box: tuple[float, float, float, float],
        ox: int,
        oy: int,
        eyes: float,
    ) -> None:
        x, y, w, h = box
        fx0, fx1 = max(int(x) - ox, 0), min(math.ceil(x + w) - ox, self.width)
        fy0, fy1 = max(int(y) - oy, 0), min(math.ceil(y + h) - oy, self.height)
        if fx0 >= fx1 or fy0 >= fy1:
            return
        # The lid takes the colour of the skin just above the eye, column by column.
        rows = self._image[max(0, int(y) - 4) : max(1, int(y)), fx0 + ox : fx1 + ox]
        above = rows.astype(np.float32).mean(axis=0)
        width = max(1, (fx1 - fx0) // 4)  # smooth across: no stripes from lashes or brows
        kernel = np.ones(width, np.float32) / width
        padded = np.pad(above, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
        above = np.stack(
            [np.convolve(padded[:, c], kernel, mode="valid") for c in range(3)], axis=1
        )
        edge = y + h * (1.0 - eyes) - oy  # the lid's lower edge, frame rows
        ys = np.arange(fy0, fy1, dtype=np.float32) + 0.5
        cover = np.clip(edge - ys + 0.5, 0.0, 1.0)[:, None, None]
        lash = np.clip(1.5 - np.abs(ys - edge), 0.0, 1.0)[:, None, None] * (1.0 - eyes)
        region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
        region = region * (1 - cover) + above[None, :, :] * cover
        region = region * (1 - lash * 0.7) + 40.0 * lash * 0.7
        frame[fy0:fy1, fx0:fx1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
