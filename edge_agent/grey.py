"""8-bit grey conversion and the size limits shared by the PNG, JPEG and DICOM
readers (:mod:`edge_agent.imaging`): sizes are checked before decoding, and the
conversion works in row blocks, so the full image never exists as floats."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.errors import BlankImageError, CorruptImageError, ImageTooLargeError, ImageTooSmallError

MAX_PIXELS = 64 * 1024 * 1024
"""Refuse anything larger (a decompression bomb, or not an X-ray)."""
MAX_SIDE = 16384
MIN_SIDE = 64

_BLOCK_PIXELS = 1024 * 1024
"""Pixels converted to 8 bits at a time (bounds the float temporaries)."""
_PERCENTILE_SAMPLE = 4 * 1024 * 1024
"""Images up to this many pixels get exact percentiles; larger ones a regular sub-grid."""

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Decoded:
    """A reader's result: 8-bit grey pixels and what the file said about them."""

    pixels: np.ndarray
    bits_stored: int
    display: str
    source_was_colour: bool = False
    view_position: str | None = None
    photometric: str | None = None
    transfer_syntax: str | None = None


def check_size(name: str, width: int, height: int, planes: int = 1) -> None:
    """Refuse, from the header alone, an image too large (or too small) to decode."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height * max(planes, 1) > MAX_PIXELS:
        raise ImageTooLargeError(f"{name}: {width}x{height} pixels (x{planes}) is too large "
                                 f"for a chest X-ray")
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmallError(f"{name}: {width}x{height} pixels is too small for a chest X-ray")


def _block_rows(width: int) -> int:
    return max(1, _BLOCK_PIXELS // max(width, 1))


def to_uint8(array: np.ndarray, transform: Transform | None = None,
              window: tuple[float, float] | None = None) -> np.ndarray:
    """Map ``transform(array)`` to 8 bits, ``window`` (low, high) to black and white.

    Without ``window`` the image is windowed between its 0.5 and 99.5
    percentiles. ``transform`` (DICOM modality and VOI LUTs) acts on each
    pixel alone, so it is applied in row blocks; the full image never exists
    as floats.

    Raises:
        BlankImageError: no contrast.
        CorruptImageError: values that are not finite numbers.
    """

    def grey(block: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore"):  # SIGMOID far from its centre
            values = np.asarray(transform(block) if transform else block)
        if values.dtype.kind not in "biuf":
            raise CorruptImageError(f"pixel values of type {values.dtype} are not grey levels")
        values = values.astype(np.float32)
        if not np.isfinite(values).all():
            raise CorruptImageError("image has pixel values that are not finite numbers")
        return values

    if window is None:
        step = max(1, math.ceil(math.sqrt(array.size / _PERCENTILE_SAMPLE)))
        sample = grey(array[::step, ::step])
        low, high = float(np.percentile(sample, 0.5)), float(np.percentile(sample, 99.5))
    else:
        low, high = window
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CorruptImageError("image has a display window that is not finite")
    if not high > low:
        raise BlankImageError("image has no contrast (all pixels the same)")
    out = np.empty(array.shape, np.uint8)
    rows = _block_rows(array.shape[1])
    for start in range(0, array.shape[0], rows):
        block = grey(array[start:start + rows])
        out[start:start + rows] = np.clip((block - low) / (high - low) * 255.0, 0, 255)
    if window is not None and int(out.min()) == int(out.max()):
        raise BlankImageError("image has no contrast in its display window (all pixels the same)")
    return out
