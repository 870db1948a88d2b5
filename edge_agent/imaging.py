"""Reading X-ray files into an 8-bit grey-scale array, with clear errors.

The diagnosis engine issue extends this (VOI LUT details, compressed
transfer syntaxes, out-of-distribution guard); the skeleton reads PNG, JPEG
and uncompressed or pydicom-decodable DICOM.

Every failure of the decoders, whatever its type, comes out as
:class:`InputImageError`; sizes are checked from the headers before any
pixels are decoded, and the conversion to 8 bits works in row blocks, so a
crafted file cannot make the edge allocate much more than the image itself
(``docs/fuzzing.md``).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from shared.errors import InputImageError

MAX_PIXELS = 64 * 1024 * 1024
"""Refuse anything larger (a decompression bomb, or not an X-ray)."""
MAX_SIDE = 16384
MIN_SIDE = 64
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
"""The only DICOM photometric interpretations of a grey-scale radiograph."""

_BLOCK_ROWS = 512
"""Rows converted to 8 bits at a time (bounds the float temporaries)."""
_PERCENTILE_SAMPLE = 4 * 1024 * 1024
"""Images up to this many pixels get exact percentiles; larger ones a regular sub-grid."""

Transform = Callable[[np.ndarray], np.ndarray]


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


def _check_size(name: str, width: int, height: int, planes: int = 1) -> None:
    """Refuse, from the header alone, an image too large to decode safely."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height * max(planes, 1) > MAX_PIXELS:
        raise InputImageError(f"{name}: {width}x{height} pixels (x{planes}) is too large "
                              f"for a chest X-ray")


def _to_uint8(array: np.ndarray, transform: Transform | None = None) -> np.ndarray:
    """Window ``transform(array)`` to 8 bits between its 0.5 and 99.5 percentiles.

    ``transform`` (DICOM modality and VOI LUTs) acts on each pixel alone, so it
    is applied in row blocks; the full image never exists as floats.

    Raises:
        InputImageError: no contrast, or values that are not finite numbers.
    """

    def grey(block: np.ndarray) -> np.ndarray:
        values = np.asarray(transform(block) if transform else block)
        if values.dtype.kind not in "biuf":
            raise InputImageError(f"pixel values of type {values.dtype} are not grey levels")
        values = values.astype(np.float32)
        if not np.isfinite(values).all():
            raise InputImageError("image has pixel values that are not finite numbers")
        return values

    step = max(1, math.ceil(math.sqrt(array.size / _PERCENTILE_SAMPLE)))
    sample = grey(array[::step, ::step])
    low, high = float(np.percentile(sample, 0.5)), float(np.percentile(sample, 99.5))
    if not high > low:
        raise InputImageError("image has no contrast (all pixels the same)")
    out = np.empty(array.shape, np.uint8)
    for start in range(0, array.shape[0], _BLOCK_ROWS):
        block = grey(array[start:start + _BLOCK_ROWS])
        out[start:start + _BLOCK_ROWS] = np.clip((block - low) / (high - low) * 255.0, 0, 255)
    return out


def _raster_pixels(data: bytes, path: Path) -> tuple[np.ndarray, Literal["png", "jpeg"]]:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            if fmt not in ("png", "jpeg"):
                raise InputImageError(f"{path.name}: {fmt or 'unknown'} images are not supported")
            _check_size(path.name, *image.size)
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                array = _to_uint8(np.asarray(image))
            else:
                array = np.asarray(image.convert("L"))
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"{path.name}: image is too large for a chest X-ray ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for corrupt files (OSError, ValueError, ...)
        raise InputImageError(
            f"{path.name}: not a readable PNG or JPEG ({type(exc).__name__}: {exc})") from exc
    if array.ndim != 2:
        raise InputImageError(f"{path.name}: expected one grey-scale image, got shape {array.shape}")
    return array, "jpeg" if fmt == "jpeg" else "png"


def _dicom_pixels(data: bytes, path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # pydicom decodes JPEG fragments with Pillow
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in dataset:
            raise InputImageError(f"{path.name}: DICOM file has no pixel data")
        rows, cols = _dicom_int(dataset, "Rows", 0), _dicom_int(dataset, "Columns", 0)
        frames = _dicom_int(dataset, "NumberOfFrames", 1)
        samples = _dicom_int(dataset, "SamplesPerPixel", 1)
        _check_size(path.name, cols, rows, planes=max(frames, 1) * max(samples, 1))
        photometric = dataset.get("PhotometricInterpretation")
        if photometric not in MONOCHROME:
            raise InputImageError(f"{path.name}: photometric interpretation {photometric!r} is not "
                                  f"a grey-scale radiograph ({' or '.join(MONOCHROME)})")
        array = dataset.pixel_array
        if array.ndim != 2:
            raise InputImageError(
                f"{path.name}: expected one grey-scale frame, got shape {array.shape}")

        def luts(block: np.ndarray) -> np.ndarray:
            result: np.ndarray = apply_voi_lut(apply_modality_lut(block, dataset), dataset)
            return result

        pixels = _to_uint8(array, luts)
    except InputImageError as exc:
        if str(exc).startswith(path.name):
            raise
        raise InputImageError(f"{path.name}: {exc}") from exc
    except Exception as exc:  # pydicom raises many types for corrupt or unsupported files
        raise InputImageError(
            f"{path.name}: not a readable DICOM image ({type(exc).__name__}: {exc})") from exc
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


def _dicom_int(dataset: Any, keyword: str, default: int) -> int:
    """An integer attribute; a list, text or missing value is refused or defaulted."""
    value = dataset.get(keyword, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputImageError(f"DICOM {keyword} must be one number, got {value!r}"[:200])
    try:
        return int(value)
    except ValueError as exc:
        raise InputImageError(f"DICOM {keyword} must be one number, got {value!r}"[:200]) from exc


def thumbnail_jpeg(pixels: np.ndarray, size: int = 256, quality: int = 80) -> bytes:
    """A small JPEG of the image for the hub's lists and the ER's first look."""
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
