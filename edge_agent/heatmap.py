"""Class activation heat maps and the regions they point at, in numpy.

A finding's map is the final-layer weights applied to the last feature map
(the model outputs it as ``cam``). Here it is rectified, scaled to its own
peak, enlarged to the image and blended over it; the region is the box
around the connected area above half the peak that holds the peak.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared.findings import Finding

OVERLAY_SIDE = 320
REGION_LEVEL = 0.5


@dataclass(frozen=True)
class HeatMap:
    """One finding's map in [0, 1] at the model's resolution, with its peak."""

    finding: Finding
    map: np.ndarray
    peak_x: float
    peak_y: float
    """Peak position normalised to the image (0..1)."""
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 normalised: the area above half the peak around it."""


def _colour_table() -> np.ndarray:
    """A 256-entry blue-cyan-yellow-red table (perceptually ordered, no green
    plateau), so hot areas read as hot for colour-blind viewers too."""
    stops = np.array([[0, 0, 80], [0, 120, 255], [0, 230, 230], [255, 230, 0], [230, 0, 0]], float)
    x = np.linspace(0, len(stops) - 1, 256)
    low = np.floor(x).astype(int).clip(0, len(stops) - 2)
    t = (x - low)[:, None]
    return (stops[low] * (1 - t) + stops[low + 1] * t).astype(np.uint8)


_COLOURS = _colour_table()


def heat_map(finding: Finding, cam: np.ndarray) -> HeatMap:
    """Normalise one raw map (h, w) and find its peak and region."""
    rectified = np.maximum(cam.astype(np.float32), 0)
    peak = float(rectified.max())
    norm = rectified / peak if peak > 0 else rectified
    h, w = norm.shape
    py, px = np.unravel_index(int(np.argmax(norm)), norm.shape)
    box = _region(norm, py, px)
    return HeatMap(finding, norm, (px + 0.5) / w, (py + 0.5) / h,
                   (box[1] / w, box[0] / h, (box[3] + 1) / w, (box[2] + 1) / h))


def _region(norm: np.ndarray, py: int, px: int) -> tuple[int, int, int, int]:
    """Bounding rows/cols (y1, x1, y2, x2) of the 4-connected area >= REGION_LEVEL holding the peak."""
    mask = norm >= REGION_LEVEL
    seen = np.zeros_like(mask)
    stack = [(py, px)]
    seen[py, px] = True
    ys, xs = [py], [px]
    while stack:
        y, x = stack.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                stack.append((ny, nx))
                ys.append(ny)
                xs.append(nx)
    return min(ys), min(xs), max(ys), max(xs)


def overlay_base(pixels: np.ndarray, side: int = OVERLAY_SIDE) -> np.ndarray:
    """The image reduced once to the overlay size (shared by the top findings' overlays)."""
    h, w = pixels.shape
    if max(h, w) <= side:
        return pixels
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def overlay_jpeg(pixels: np.ndarray, heat: HeatMap, side: int = OVERLAY_SIDE, quality: int = 70) -> bytes:
    """The grey image with the heat map blended over it, as a small JPEG (pass
    :func:`overlay_base` of the image when making several)."""
    h, w = pixels.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    enlarged = np.asarray(Image.fromarray((heat.map * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    colour = _COLOURS[(enlarged * 255).astype(np.uint8)].astype(np.float32)
    alpha = (0.55 * np.clip((enlarged - 0.2) / 0.8, 0, 1))[..., None]
    blended = grey[..., None] * (1 - alpha) + colour * alpha
    out = io.BytesIO()
    Image.fromarray(blended.clip(0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()
