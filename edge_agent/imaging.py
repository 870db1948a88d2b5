"""Reading X-ray files into an 8-bit grey-scale array, with clear errors.

The diagnosis engine issue extends this (VOI LUT details, compressed
transfer syntaxes, out-of-distribution guard); the skeleton reads PNG, JPEG
and uncompressed or pydicom-decodable DICOM.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.errors import InputImageError

MAX_PIXELS = 64 * 1024 * 1024
"""Refuse anything larger (a decompression bomb, or not an X-ray)."""
MAX_SIDE = 16384
MIN_SIDE = 64


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: 8-bit grey pixels (0 = black) and where they came from."""

    pixels: np.ndarray
    format: Literal["dicom", "png", "jpeg"]
    source: str
    sha256: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(path: Path) -> LoadedImage:
    """Read a PNG, JPEG or DICOM file.

    Raises:
        InputImageError: unreadable, corrupt, too large or too small.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputImageError(f"cannot read {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if data[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom"):
        pixels = _dicom_pixels(data, path)
        fmt: Literal["dicom", "png", "jpeg"] = "dicom"
    else:
        pixels, fmt = _raster_pixels(data, path)
    if min(pixels.shape) < MIN_SIDE:
        raise InputImageError(f"{path.name}: image {pixels.shape} is too small for a chest X-ray")
    if max(pixels.shape) > MAX_SIDE:
        raise InputImageError(f"{path.name}: image {pixels.shape} is too large for a chest X-ray")
    return LoadedImage(pixels=pixels, format=fmt, source=path.name, sha256=digest)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    low, high = float(np.percentile(array, 0.5)), float(np.percentile(array, 99.5))
    if high <= low:
        raise InputImageError("image has no contrast (all pixels the same)")
    return np.clip((array - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)


def _raster_pixels(data: bytes, path: Path) -> tuple[np.ndarray, Literal["png", "jpeg"]]:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            if fmt not in ("png", "jpeg"):
                raise InputImageError(f"{path.name}: {fmt or 'unknown'} images are not supported")
            image.load()
            if image.mode in ("I;16", "I;16B", "I", "F"):
                array = _to_uint8(np.asarray(image))
            else:
                array = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise InputImageError(f"{path.name}: not a readable PNG or JPEG ({exc})") from exc
    return array, "jpeg" if fmt == "jpeg" else "png"


def _dicom_pixels(data: bytes, path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise InputImageError(f"{path.name}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in dataset:
        raise InputImageError(f"{path.name}: DICOM file has no pixel data")
    rows, cols = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * cols > MAX_PIXELS:
        raise InputImageError(f"{path.name}: {rows}x{cols} pixels is too large")
    try:
        array = dataset.pixel_array
        if array.ndim != 2:
            raise InputImageError(
                f"{path.name}: expected one grey-scale frame, got shape {array.shape}")
        array = apply_voi_lut(apply_modality_lut(array, dataset), dataset)
    except InputImageError:
        raise
    except Exception as exc:  # pydicom raises many types for corrupt or unsupported pixel data
        raise InputImageError(f"{path.name}: cannot decode DICOM pixel data ({exc})") from exc
    pixels = _to_uint8(array)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


def thumbnail_jpeg(pixels: np.ndarray, size: int = 256, quality: int = 80) -> bytes:
    """A small JPEG of the image for the hub's lists and the ER's first look."""
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
