"""An 8-bit grey PNG preview of a case's verified image, for the browser's viewer.

DICOM is decoded with pydicom (modality and VOI LUTs applied, MONOCHROME1
inverted); PNG and JPEG with Pillow. The hub does not import the edge agent:
this is a small copy of the same rules (``edge_agent/imaging.py``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

MAX_PIXELS = 64_000_000
"""Refuse to decode anything larger (a chest X-ray is far smaller)."""
PREVIEW_SIDE = 2048
"""The preview's longer side at most, in pixels."""


class PreviewError(ValueError):
    """The stored image cannot be shown."""


def _window(values: np.ndarray) -> np.ndarray:
    """Grey levels to 8 bits between the 0.5 and 99.5 percentiles."""
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        raise PreviewError("pixel values that are not finite numbers")
    step = max(1, int(np.sqrt(values.size / 250_000)))
    sample = values[::step, ::step]
    low, high = float(np.percentile(sample, 0.5)), float(np.percentile(sample, 99.5))
    if not high > low:
        return np.zeros(values.shape, np.uint8)
    return np.clip((values - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)


def _dicom(data: bytes) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    dataset: Any = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in dataset:
        raise PreviewError("DICOM file without pixel data")
    if int(dataset.get("Rows", 0)) * int(dataset.get("Columns", 0)) > MAX_PIXELS:
        raise PreviewError("image too large")
    photometric = dataset.get("PhotometricInterpretation")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PreviewError(f"photometric interpretation {photometric!r} is not grey-scale")
    array = dataset.pixel_array
    if array.ndim != 2:
        raise PreviewError(f"expected one grey-scale frame, got shape {array.shape}")
    pixels = _window(np.asarray(apply_voi_lut(apply_modality_lut(array, dataset), dataset)))
    return 255 - pixels if photometric == "MONOCHROME1" else pixels


def _raster(data: bytes) -> np.ndarray:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _window(np.asarray(image))
        return np.asarray(image.convert("L"))


def render_preview(data: bytes, media_type: str, max_side: int = PREVIEW_SIDE) -> bytes:
    """The image as an 8-bit grey PNG whose longer side is at most ``max_side``.

    Raises:
        PreviewError: the bytes are not a readable grey-scale image.
    """
    try:
        pixels = _dicom(data) if media_type == "application/dicom" else _raster(data)
    except PreviewError:
        raise
    except Exception as exc:  # pydicom and Pillow raise many types for corrupt files
        raise PreviewError(f"not a readable image ({type(exc).__name__})") from exc
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()
