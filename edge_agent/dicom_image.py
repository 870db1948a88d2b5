"""Reading DICOM X-rays into 8-bit grey through pydicom (with pylibjpeg for
the compressed transfer syntaxes).

The grey levels go through the standard chain (``docs/edge-ingest.md``):
modality LUT or rescale slope and intercept, then the VOI LUT Sequence or the
window (LINEAR, LINEAR_EXACT or SIGMOID per VOI LUT Function), then MONOCHROME1
is inverted, so 0 is always black. Sizes are checked from the headers,
including the compressed code stream's own header, before any pixels are
decoded; every failure comes out as an :class:`InputImageError` subclass.
"""

from __future__ import annotations

import io
import logging
import math
import struct
from typing import Any

import numpy as np
from PIL import Image

from edge_agent.grey import MAX_PIXELS, Decoded, check_size, to_uint8
from edge_agent.input_checks import check_body_part_and_modality
from shared.errors import (
    BlankImageError,
    CorruptImageError,
    InputImageError,
    NoPixelDataError,
    NotFrontalViewError,
    PhotometricInterpretationError,
    UnsupportedImageError,
)

logger = logging.getLogger(__name__)

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
"""The only DICOM photometric interpretations of a grey-scale radiograph."""
FRONTAL_VIEWS = ("PA", "AP")
"""DICOM View Position values of a frontal chest view."""
NON_FRONTAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLO", "RLO", "OBL", "OBLIQUE", "LLD", "RLD",
                     "LAO", "RAO", "LPO", "RPO")
"""View Position values refused: lateral, oblique and decubitus views."""

_UNCOMPRESSED = frozenset({
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
})
_JPEG = frozenset({
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4), 12 bit
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
})
_JPEG2000 = frozenset({
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
})
_RLE = frozenset({"1.2.840.10008.1.2.5"})
SUPPORTED_TRANSFER_SYNTAXES = _UNCOMPRESSED | _JPEG | _JPEG2000 | _RLE
"""DICOM transfer syntaxes that :func:`dicom_pixels` decodes."""


def dicom_pixels(data: bytes, name: str) -> Decoded:
    """The pixels of a DICOM file named ``name``, in 8-bit grey (0 = black)."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # pydicom may decode JPEG fragments with Pillow
    try:
        return _read_dicom(data, name)
    except InputImageError as exc:
        if str(exc).startswith(name):
            raise
        raise type(exc)(f"{name}: {exc}") from exc
    except Exception as exc:  # pydicom raises many types for corrupt or unsupported files
        raise CorruptImageError(
            f"{name}: not a readable DICOM image ({type(exc).__name__}: {exc})"[:500]) from exc


def _read_dicom(data: bytes, name: str) -> Decoded:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise CorruptImageError(f"{name}: not a DICOM file ({exc})"[:300]) from exc
    except (EOFError, struct.error) as exc:
        raise CorruptImageError(f"{name}: DICOM file is truncated ({type(exc).__name__}: {exc})") from exc
    _check_not_truncated(dataset, name)
    if "PixelData" not in dataset:
        if "FloatPixelData" in dataset or "DoubleFloatPixelData" in dataset:
            raise UnsupportedImageError(f"{name}: DICOM float pixel data is not a radiograph")
        hint = ", or the file was cut short" if "Rows" in dataset else ""
        raise NoPixelDataError(f"{name}: DICOM file has no pixel data (not an image object{hint})")
    rows, cols = _dicom_int(dataset, "Rows", 0), _dicom_int(dataset, "Columns", 0)
    frames = _dicom_int(dataset, "NumberOfFrames", 1)
    samples = _dicom_int(dataset, "SamplesPerPixel", 1)
    check_size(name, cols, rows, planes=max(frames, 1) * max(samples, 1))
    photometric = dataset.get("PhotometricInterpretation")
    if photometric not in MONOCHROME:
        kind = ("colour" if isinstance(photometric, str)
                and photometric.startswith(("RGB", "YBR", "PALETTE", "ARGB", "CMYK", "HSV", "XYB"))
                else "unknown")
        raise PhotometricInterpretationError(
            f"{name}: photometric interpretation {photometric!r} is {kind}, not a grey-scale "
            f"radiograph ({' or '.join(MONOCHROME)}); send the original X-ray, not a screenshot"[:300])
    if samples != 1:
        raise PhotometricInterpretationError(
            f"{name}: {samples} samples per pixel is not a grey-scale radiograph (needs 1)")
    if frames > 1:
        raise UnsupportedImageError(f"{name}: {frames} frames; a chest radiograph is one frame")
    view = _view_position(dataset, name)
    check_body_part_and_modality(dataset, name)
    allocated = _dicom_int(dataset, "BitsAllocated", 0)
    stored = _dicom_int(dataset, "BitsStored", allocated)
    if allocated not in (8, 16) or not 8 <= stored <= allocated:
        raise UnsupportedImageError(f"{name}: {stored} bits stored in {allocated} allocated; "
                                    f"supported are 8 to 16 bits stored in 8 or 16")
    if _dicom_int(dataset, "PixelRepresentation", 0) not in (0, 1):
        raise CorruptImageError(f"{name}: PixelRepresentation must be 0 or 1")
    syntax = _transfer_syntax(dataset, name)
    _check_pixel_data(dataset, name, syntax, rows, cols, allocated)

    array = dataset.pixel_array
    if array.ndim != 2 or array.shape != (rows, cols):
        raise CorruptImageError(f"{name}: expected one {rows}x{cols} grey-scale frame, "
                                f"got shape {array.shape}")
    pixels, display = _display(array, dataset, name, stored)
    if photometric == "MONOCHROME1":
        pixels = np.subtract(255, pixels, dtype=np.uint8)
    return Decoded(pixels=pixels, bits_stored=stored, display=display, view_position=view,
                    photometric=photometric, transfer_syntax=syntax)


def _check_not_truncated(dataset: Any, name: str) -> None:
    """pydicom reads a file cut short without complaint: the last element then
    holds fewer bytes than its header declares (or there is no element at all)."""
    from pydicom.dataelem import RawDataElement

    tags = sorted(dataset.keys())
    if not tags:
        raise CorruptImageError(f"{name}: DICOM file is truncated or damaged "
                                f"(no readable data set after the file header)")
    last = dataset.get_item(tags[-1])
    if isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF and last.value is not None \
            and len(last.value) < last.length:
        raise CorruptImageError(f"{name}: DICOM file is truncated ({last.tag} has {len(last.value)} of "
                                f"{last.length} bytes)")


def _view_position(dataset: Any, name: str) -> str | None:
    """The View Position; a lateral, oblique or decubitus view is refused."""
    value = dataset.get("ViewPosition")
    if value is None or not isinstance(value, str) or not value.strip():
        return None
    view = " ".join(value.upper().split())
    words = set(view.replace("_", " ").replace("-", " ").split())
    if view not in FRONTAL_VIEWS and (words & set(NON_FRONTAL_VIEWS) or "LAT" in view or "OBL" in view
                                      or "DECUB" in view):
        raise NotFrontalViewError(f"{name}: not a frontal chest view (View Position {value!r}); "
                                  f"the model reads PA or AP views only"[:300])
    if view not in FRONTAL_VIEWS:
        logger.warning("unusual DICOM View Position, read as frontal", extra={"view_position": view[:16]})
    return view[:16]


def _transfer_syntax(dataset: Any, name: str) -> str:
    from pydicom.pixels import get_decoder

    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not syntax:
        raise CorruptImageError(f"{name}: DICOM file meta has no transfer syntax")
    syntax = str(syntax)
    if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise UnsupportedImageError(f"{name}: transfer syntax {syntax} is not supported "
                                    f"(see docs/edge-ingest.md)")
    decoder = get_decoder(syntax)
    if not decoder.is_available:
        missing = "; ".join(str(item) for item in getattr(decoder, "missing_dependencies", []))
        raise UnsupportedImageError(f"{name}: no decoder installed for transfer syntax {syntax} "
                                    f"(install pylibjpeg with its libjpeg, openjpeg and rle plugins; "
                                    f"{missing})"[:400])
    return syntax


def _check_pixel_data(dataset: Any, name: str, syntax: str, rows: int, cols: int, allocated: int) -> None:
    """Refuse truncated pixel data, and compressed frames whose own header
    disagrees with the DICOM header (or is too large), before decoding."""
    from pydicom.encaps import generate_frames

    pixel_data = dataset.PixelData
    if not isinstance(pixel_data, bytes | bytearray):
        raise CorruptImageError(f"{name}: pixel data is not a byte string")
    if syntax in _UNCOMPRESSED:
        expected = rows * cols * allocated // 8
        if len(pixel_data) < expected:
            raise CorruptImageError(f"{name}: pixel data is truncated ({len(pixel_data)} of "
                                    f"{expected} bytes)")
        return
    try:
        frame = next(generate_frames(pixel_data, number_of_frames=1))
    except StopIteration as exc:
        raise CorruptImageError(f"{name}: compressed pixel data has no frame") from exc
    except Exception as exc:
        raise CorruptImageError(f"{name}: compressed pixel data is damaged or truncated "
                                f"({type(exc).__name__}: {exc})"[:300]) from exc
    if not frame:
        raise CorruptImageError(f"{name}: compressed pixel data has an empty frame")
    size = _codestream_size(frame, syntax)
    if size is None:
        if syntax in _RLE:
            return
        raise CorruptImageError(f"{name}: compressed frame has no readable image header "
                                f"(damaged or truncated)")
    width, height, components = size
    check_size(name, width, height, components)
    if (width, height) != (cols, rows):
        raise CorruptImageError(f"{name}: compressed frame is {width}x{height} but the DICOM header "
                                f"says {cols}x{rows}")
    if components != 1:
        raise PhotometricInterpretationError(f"{name}: compressed frame has {components} colour "
                                             f"components; a radiograph has 1")


_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
                       0xF7})  # SOF0..SOF15 (not DHT, JPG, DAC) and JPEG-LS SOF55


def _codestream_size(frame: bytes, syntax: str) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG, JPEG-LS or JPEG 2000 code stream's
    own header, read without decoding; None when it has none (or for RLE)."""
    if syntax in _JPEG:
        position = 2 if frame[:2] == b"\xff\xd8" else -1
        while 0 <= position < min(len(frame), 1 << 20) - 4:
            if frame[position] != 0xFF:
                return None
            marker = frame[position + 1]
            if marker == 0xFF:  # fill byte
                position += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                position += 2
                continue
            (length,) = struct.unpack(">H", frame[position + 2:position + 4])
            if marker in _JPEG_SOF:
                if position + 10 > len(frame):
                    return None
                height, width = struct.unpack(">HH", frame[position + 5:position + 9])
                return width, height, frame[position + 9]
            if marker == 0xDA or length < 2:  # start of scan before any frame header
                return None
            position += 2 + length
        return None
    if syntax in _JPEG2000:
        siz = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ (also inside a JP2 box)
        if siz < 0 or siz + 42 > len(frame):
            return None
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[siz + 8:siz + 24])
        (components,) = struct.unpack(">H", frame[siz + 40:siz + 42])
        return max(xsiz - xosiz, 0), max(ysiz - yosiz, 0), components
    return None


def _display(array: np.ndarray, dataset: Any, name: str, stored: int) -> tuple[np.ndarray, str]:
    """Modality LUT, then VOI (LUT sequence or window), then 8 bits."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    slope = _dicom_float(dataset, "RescaleSlope", 1.0)
    intercept = _dicom_float(dataset, "RescaleIntercept", 0.0)
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise CorruptImageError(f"{name}: rescale slope {slope} / intercept {intercept} is not finite")
    modality = bool(dataset.get("ModalityLUTSequence")) or slope != 1.0 or intercept != 0.0
    voi_lut = bool(dataset.get("VOILUTSequence"))
    window = "WindowCenter" in dataset and "WindowWidth" in dataset and \
        dataset.WindowCenter not in (None, "") and dataset.WindowWidth not in (None, "")

    def modality_only(block: np.ndarray) -> np.ndarray:
        result: np.ndarray = apply_modality_lut(block, dataset)
        return result

    def luts(block: np.ndarray) -> np.ndarray:
        values = apply_modality_lut(block, dataset)
        if voi_lut and values.dtype.kind == "f":  # a LUT is indexed by integers
            values = np.rint(values).astype(np.int64)
        result: np.ndarray = apply_voi_lut(values, dataset, prefer_lut=True)
        return result

    if voi_lut:
        item = dataset.VOILUTSequence[0]
        descriptor = [int(v) for v in item.LUTDescriptor]
        entries = descriptor[0] or 65536
        first = descriptor[1]
        if first >= 32768 and dataset.get("PixelRepresentation", 0) == 1:
            first -= 65536  # a signed first mapped value, stored as US
        domain = np.arange(first, first + entries, dtype=np.int64)
        outputs = np.asarray(apply_voi_lut(domain, dataset, prefer_lut=True), dtype=np.float64)
        return to_uint8(array, luts, (float(outputs.min()), float(outputs.max()))), "VOI LUT"
    if window:
        function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise UnsupportedImageError(f"{name}: VOI LUT Function {function!r} is not supported "
                                        f"(LINEAR, LINEAR_EXACT or SIGMOID)"[:200])
        centre, width = _window_value(dataset, "WindowCenter"), _window_value(dataset, "WindowWidth")
        if not (math.isfinite(centre) and math.isfinite(width)) or width <= 0:
            raise CorruptImageError(f"{name}: window centre {centre} / width {width} is not a valid window")
        far = 20.0 * width + 1.0
        try:
            with np.errstate(over="ignore", under="ignore"):
                ends = np.asarray(apply_voi_lut(np.array([centre - far, centre + far]), dataset,
                                                prefer_lut=True), np.float64)
        except ValueError as exc:
            raise CorruptImageError(f"{name}: invalid window ({exc})"[:300]) from exc
        return to_uint8(array, luts, (float(ends.min()), float(ends.max()))), f"window {function}"
    if not modality and stored == 8 and array.dtype == np.uint8:
        if int(array.min()) == int(array.max()):
            raise BlankImageError(f"{name}: image has no contrast (all pixels the same)")
        return np.ascontiguousarray(array), "as stored"
    return to_uint8(array, modality_only if modality else None), "percentiles"


def _window_value(dataset: Any, keyword: str) -> float:
    """The first Window Center or Width (the attribute may hold several)."""
    value = dataset.get(keyword)
    if not isinstance(value, str | int | float):
        try:
            value = list(value)[0]
        except (TypeError, IndexError) as exc:
            raise CorruptImageError(f"DICOM {keyword} must be a number, got {value!r}"[:200]) from exc
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(f"DICOM {keyword} must be a number, got {value!r}"[:200]) from exc


def _dicom_float(dataset: Any, keyword: str, default: float) -> float:
    value = dataset.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(f"DICOM {keyword} must be one number, got {value!r}"[:200]) from exc


def _dicom_int(dataset: Any, keyword: str, default: int) -> int:
    """An integer attribute; a list, text or missing value is refused or defaulted."""
    value = dataset.get(keyword, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CorruptImageError(f"DICOM {keyword} must be one number, got {value!r}"[:200])
    try:
        return int(value)
    except ValueError as exc:
        raise CorruptImageError(f"DICOM {keyword} must be one number, got {value!r}"[:200]) from exc

