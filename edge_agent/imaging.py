"""Reading X-ray files into an 8-bit grey-scale array, with clear errors.

Formats: PNG and JPEG (8 and 16 bit, grey or colour; colour is converted to
grey and reported in :attr:`LoadedImage.source_was_colour`), and DICOM through
pydicom with 8 to 16 bits stored, uncompressed or compressed (JPEG baseline,
extended and lossless, JPEG-LS, JPEG 2000, RLE; decoded by pydicom's pixel
handlers with pylibjpeg). The DICOM grey levels go through the standard chain
(``docs/edge-ingest.md``): modality LUT or rescale slope and intercept, then the
VOI LUT Sequence or the window (LINEAR, LINEAR_EXACT or SIGMOID per VOI LUT
Function), then MONOCHROME1 is inverted, so 0 is always black.

Every failure of the decoders, whatever its type, comes out as an
:class:`InputImageError` subclass that says what is wrong (corrupt, no pixel
data, colour, too large, not a frontal view, ...); sizes are checked from the
headers, including the compressed code stream's own header, before any pixels
are decoded, and the conversion to 8 bits works in row blocks, so a crafted
file cannot make the edge allocate much more than the image itself
(``docs/fuzzing.md``).

The readers: :mod:`edge_agent.raster` (PNG, JPEG), :mod:`edge_agent.dicom_image`
(DICOM) and :mod:`edge_agent.grey` (the size limits and the conversion to 8 bits).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from edge_agent.dicom_image import dicom_pixels
from edge_agent.grey import MAX_SIDE, MIN_SIDE
from edge_agent.raster import raster_pixels
from shared.errors import ImageTooLargeError, ImageTooSmallError, InputImageError


@dataclass(frozen=True)
class XrayFile:
    """An X-ray file's bytes, read and hashed once: the pipeline decodes them and
    the agent sends them, both from here."""

    name: str
    """The file's name (no folder): error messages and the diagnosis say it."""
    data: bytes
    sha256: str

    @classmethod
    def read(cls, path: Path) -> XrayFile:
        """Read ``path``.

        Raises:
            InputImageError: the file cannot be read.
        """
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputImageError(f"cannot read {path}: {exc}") from exc
        return cls(name=path.name, data=data, sha256=hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: 8-bit grey pixels (0 = black) and where they came from.

    The fields after ``sha256`` describe the source and default to a plain
    8-bit grey raster image.
    """

    pixels: np.ndarray
    format: Literal["dicom", "png", "jpeg"]
    source: str
    sha256: str
    bits_stored: int = 8
    """Bits per grey level in the file (8 to 16)."""
    source_was_colour: bool = False
    """A PNG or JPEG whose colour channels differ materially (a photo, not an X-ray)."""
    view_position: str | None = None
    """DICOM View Position (``PA``, ``AP``), when the file says."""
    photometric: str | None = None
    """DICOM photometric interpretation (``MONOCHROME1`` or ``MONOCHROME2``)."""
    transfer_syntax: str | None = None
    """DICOM transfer syntax UID."""
    display: str = "as stored"
    """How the grey levels were mapped to 8 bits: ``as stored``, ``VOI LUT``,
    ``window LINEAR`` (or ``LINEAR_EXACT``, ``SIGMOID``), ``percentiles``."""

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])



def load_image(path: Path) -> LoadedImage:
    """Read and decode a PNG, JPEG or DICOM file (see :func:`decode_image`).

    Raises:
        InputImageError: as :func:`decode_image`, or the file cannot be read.
    """
    return decode_image(XrayFile.read(path))


def decode_image(file: XrayFile) -> LoadedImage:
    """Decode a PNG, JPEG or DICOM file.

    Raises:
        InputImageError: unreadable, corrupt, too large or too small; the
            subclasses in :mod:`shared.errors` say which (``CorruptImageError``,
            ``NoPixelDataError``, ``PhotometricInterpretationError``,
            ``UnsupportedImageError``, ``ImageTooLargeError``,
            ``ImageTooSmallError``, ``BlankImageError``, ``NotFrontalViewError``).
    """
    data, name = file.data, file.name
    if data[128:132] == b"DICM" or Path(name).suffix.lower() in (".dcm", ".dicom"):
        decoded = dicom_pixels(data, name)
        fmt: Literal["dicom", "png", "jpeg"] = "dicom"
    else:
        decoded, fmt = raster_pixels(data, name)
    pixels = decoded.pixels
    if min(pixels.shape) < MIN_SIDE:
        raise ImageTooSmallError(f"{name}: image {pixels.shape} is too small for a chest X-ray")
    if max(pixels.shape) > MAX_SIDE:
        raise ImageTooLargeError(f"{name}: image {pixels.shape} is too large for a chest X-ray")
    return LoadedImage(pixels=pixels, format=fmt, source=name, sha256=file.sha256,
                       bits_stored=decoded.bits_stored, source_was_colour=decoded.source_was_colour,
                       view_position=decoded.view_position, photometric=decoded.photometric,
                       transfer_syntax=decoded.transfer_syntax, display=decoded.display)


def thumbnail_jpeg(pixels: np.ndarray, size: int = 256, quality: int = 80) -> bytes:
    """A small JPEG of the image for the hub's lists and the ER's first look."""
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()

