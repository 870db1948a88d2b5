"""Reading PNG and JPEG X-rays (8 and 16 bit, grey or colour) into 8-bit grey.

Colour is converted to grey and reported (a photo is not an X-ray: the chest
guard refuses what was materially coloured); every decoder failure comes out as
an :class:`InputImageError` subclass.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Literal

import numpy as np
from PIL import Image

from edge_agent.grey import MAX_PIXELS, Decoded, check_size, to_uint8
from edge_agent.input_checks import check_jpeg_complete, scrub
from shared.errors import (
    CorruptImageError,
    ImageTooLargeError,
    InputImageError,
    SyntheticImageError,
    UnsupportedImageError,
)
from shared.synthetic import read_mark

logger = logging.getLogger(__name__)

COLOUR_CHROMA = 24
"""A pixel is coloured when its R, G and B differ by more than this (of 255)."""
COLOUR_FRACTION = 0.02
"""A raster image is colour when more than this fraction of its pixels is coloured
(a grey X-ray saved as RGB, even with a small coloured marker, stays under it)."""

_COLOUR_SAMPLE = 1024 * 1024
"""Pixels looked at to decide whether a raster image is colour."""


def raster_pixels(data: bytes, name: str) -> tuple[Decoded, Literal["png", "jpeg"]]:
    """The pixels of a PNG or JPEG file named ``name``, in 8-bit grey."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    colour = False
    bits = 8
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            if fmt not in ("png", "jpeg"):
                raise UnsupportedImageError(f"{name}: {fmt or 'unknown'} images are not supported "
                                            f"(PNG, JPEG or DICOM)")
            check_size(name, *image.size)
            image.load()
            if read_mark(getattr(image, "text", None) or image.info) is not None:
                raise SyntheticImageError(f"{name}: a synthetic image made by goldenhour's generator, "
                                          "not a patient's X-ray; it is never diagnosed as a case")
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                bits = 16
                array = to_uint8(np.asarray(image))
                display = "percentiles"
            else:
                if image.mode not in ("1", "L", "LA", "La"):
                    colour = _is_colour(image)
                array = np.asarray(image.convert("L"))
                display = "as stored"
    except InputImageError as exc:
        if str(exc).startswith(name):
            raise
        raise type(exc)(f"{name}: {exc}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large for a chest X-ray ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for corrupt files (OSError, ValueError, ...)
        raise CorruptImageError(
            f"{name}: not a readable PNG or JPEG ({type(exc).__name__}: {scrub(str(exc), name)})"
        ) from exc
    if fmt == "jpeg":
        check_jpeg_complete(array, name)
    if array.ndim != 2:
        raise UnsupportedImageError(f"{name}: expected one grey-scale image, got shape {array.shape}")
    if colour:
        logger.info("colour raster image converted to grey", extra={"image": name})
    return Decoded(pixels=array, bits_stored=bits, display=display,
                    source_was_colour=colour), "jpeg" if fmt == "jpeg" else "png"


def _is_colour(image: Image.Image) -> bool:
    """Whether materially many pixels have channels that differ (a sub-grid is
    enough, and keeps a large image from being copied as RGB)."""
    width, height = image.size
    step = max(1, math.ceil(math.sqrt(width * height / _COLOUR_SAMPLE)))
    grid = image.resize((max(1, width // step), max(1, height // step)), Image.Resampling.NEAREST)
    sample = np.asarray(grid.convert("RGB")).astype(np.int16)
    chroma = sample.max(axis=2) - sample.min(axis=2)
    return float((chroma > COLOUR_CHROMA).mean()) > COLOUR_FRACTION

