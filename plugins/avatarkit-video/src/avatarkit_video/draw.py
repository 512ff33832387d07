"""Anti-aliased drawing of soft shapes on numpy RGB images; just enough for a cartoon face."""

from __future__ import annotations

import numpy as np

__all__ = ["Canvas", "Color", "Mask", "hex_color"]

Color = tuple[int, int, int]
#: ``(y0, x0, alpha)``: coverage over a bounding box whose top-left corner is (y0, x0).
Mask = tuple[int, int, np.ndarray]


def hex_color(value: str) -> Color:
    """``"#rrggbb"`` to an RGB tuple."""
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


class Canvas:
    """A float32 RGB image and shape coverage masks computed only over each shape's bounding box.

    A mask is ``(y0, x0, alpha)`` where ``alpha`` is a float array of the bounding box; masks are
    combined with :meth:`intersect` / :meth:`subtract` and painted with :meth:`fill`.
    """

    def __init__(self, image: np.ndarray, origin: tuple[int, int] = (0, 0)) -> None:
        """Draw on a float copy of ``image``, which sits at ``origin`` (y, x) of a larger
        picture: shapes are given in the larger picture's coordinates and clipped to ``image``."""
        self.image = image.astype(np.float32, copy=True)
        self.oy, self.ox = origin
        self.height, self.width = image.shape[:2]

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, *, soft: float = 1.0) -> Mask:
        """Coverage of an axis-aligned ellipse; ``soft`` widens the anti-aliased edge (pixels)."""
        rx, ry = max(rx, 0.25), max(ry, 0.25)
        pad = soft + 1.0
        x0 = max(self.ox, int(np.floor(cx - rx - pad)))
        x1 = min(self.ox + self.width, int(np.ceil(cx + rx + pad)) + 1)
        y0 = max(self.oy, int(np.floor(cy - ry - pad)))
        y1 = min(self.oy + self.height, int(np.ceil(cy + ry + pad)) + 1)
        if x0 >= x1 or y0 >= y1:
            return 0, 0, np.zeros((0, 0), np.float32)
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / rx
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) / ry
        rho = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
        # Signed distance to the edge, approximated in pixels along the smaller radius.
        dist = (1.0 - rho) * min(rx, ry)
        return y0, x0, np.clip(dist / soft + 0.5, 0.0, 1.0)

    def rows_above(self, mask: Mask, y: float) -> Mask:
        """``mask`` restricted to rows above ``y`` (anti-aliased)."""
        y0, x0, alpha = mask
        ys = np.arange(y0, y0 + alpha.shape[0], dtype=np.float32) + 0.5
        keep = np.clip(y - ys + 0.5, 0.0, 1.0)[:, None]
        return y0, x0, alpha * keep

    def rows_below(self, mask: Mask, y: float) -> Mask:
        """``mask`` restricted to rows below ``y`` (anti-aliased)."""
        y0, x0, alpha = mask
        ys = np.arange(y0, y0 + alpha.shape[0], dtype=np.float32) + 0.5
        keep = np.clip(ys - y + 0.5, 0.0, 1.0)[:, None]
        return y0, x0, alpha * keep

    @staticmethod
    def _aligned(a: Mask, b: Mask) -> tuple[np.ndarray, np.ndarray]:
        """``b``'s alpha resampled onto ``a``'s bounding box (zero outside ``b``)."""
        ay, ax, aa = a
        by, bx, ba = b
        out = np.zeros_like(aa)
        ys0, xs0 = max(ay, by), max(ax, bx)
        ys1 = min(ay + aa.shape[0], by + ba.shape[0])
        xs1 = min(ax + aa.shape[1], bx + ba.shape[1])
        if ys0 < ys1 and xs0 < xs1:
            out[ys0 - ay : ys1 - ay, xs0 - ax : xs1 - ax] = ba[
                ys0 - by : ys1 - by, xs0 - bx : xs1 - bx
            ]
        return aa, out

    def intersect(self, a: Mask, b: Mask) -> Mask:
        """Where both ``a`` and ``b`` cover."""
        aa, bb = self._aligned(a, b)
        return a[0], a[1], aa * bb

    def subtract(self, a: Mask, b: Mask) -> Mask:
        """Where ``a`` covers and ``b`` does not."""
        aa, bb = self._aligned(a, b)
        return a[0], a[1], aa * (1.0 - bb)

    def fill(self, mask: Mask, color: Color, opacity: float = 1.0) -> None:
        """Paint ``color`` through ``mask``."""
        y0, x0, alpha = mask
        if alpha.size == 0:
            return
        y0 -= self.oy
        x0 -= self.ox
        region = self.image[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]]
        a = (alpha * opacity)[:, :, None]
        region += (np.asarray(color, np.float32) - region) * a

    def result(self) -> np.ndarray:
        """The image as uint8 RGB."""
        out: np.ndarray = np.clip(self.image + 0.5, 0, 255).astype(np.uint8)
        return out
