"""One test per bug that fuzzing found in ``edge_agent/imaging.py`` (all fixed
there); synthetic files, so they run without the data folder."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from edge_agent.imaging import load_image
from shared.errors import InputImageError


def _dicom(**changes: object) -> bytes:
    """A small, valid 16-bit MONOCHROME2 DICOM, with attributes changed."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    y, x = np.mgrid[0:128, 0:128]
    pixels = ((np.sin(x / 9.0) + np.cos(y / 13.0) + 2) * 1000).astype(np.uint16)
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _load(tmp_path: Path, data: bytes, name: str = "x.dcm") -> None:
    path = tmp_path / name
    path.write_bytes(data)
    load_image(path)


def test_the_synthetic_dicom_itself_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "ok.dcm"
    path.write_bytes(_dicom())
    assert load_image(path).pixels.shape == (128, 128)


def test_multi_valued_rows_is_an_input_error_not_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match="Rows must be one number"):
        _load(tmp_path, _dicom(Rows=[128, 128]))


@pytest.mark.parametrize("slope", ["nan", "inf", "1e400"])
def test_non_finite_rescale_is_refused_not_a_black_image(tmp_path: Path, slope: str) -> None:
    with pytest.raises(InputImageError, match="not finite"):
        _load(tmp_path, _dicom(RescaleSlope=slope, RescaleIntercept="0"))


@pytest.mark.parametrize("photometric", ["RGB", "PALETTE COLOR", "YBR_FULL", "JUNK"])
def test_colour_or_unknown_photometric_interpretation_is_refused(tmp_path: Path,
                                                                 photometric: str) -> None:
    with pytest.raises(InputImageError, match="not a grey-scale radiograph"):
        _load(tmp_path, _dicom(PhotometricInterpretation=photometric))


def test_unknown_value_representation_is_an_input_error(tmp_path: Path) -> None:
    data = _dicom()
    rows = b"\x28\x00\x10\x00US"
    assert rows in data
    with pytest.raises(InputImageError, match="not a readable DICOM"):  # was NotImplementedError
        _load(tmp_path, data.replace(rows, b"\x28\x00\x10\x00UG"))


def test_odd_length_numeric_element_is_an_input_error(tmp_path: Path) -> None:
    data = _dicom()
    rows = b"\x28\x00\x10\x00US\x02\x00\x80\x00"
    assert rows in data
    damaged = data.replace(rows, b"\x28\x00\x10\x00US\x01\x00\x80")  # was BytesLengthException
    with pytest.raises(InputImageError):
        _load(tmp_path, damaged)


def test_frame_count_is_checked_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match="too large"):
        _load(tmp_path, _dicom(NumberOfFrames="100000"))


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks)


def _small_png_chunks() -> list[tuple[bytes, bytes]]:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(128 * 128).reshape(128, 128) % 251).astype(np.uint8)).save(buffer, "PNG")
    data, chunks, position = buffer.getvalue(), [], 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunks.append((kind, data[position + 8:position + 8 + length]))
        position += 12 + length
    return chunks


@pytest.mark.parametrize(("kind", "body"), [
    (b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 2_000_000)),
    (b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * 2_000_000)),
    (b"pHYs", b"\x00"),
    (b"fcTL", b"\x00" * 26),
])
def test_bad_png_chunks_are_input_errors_not_value_errors(tmp_path: Path, kind: bytes,
                                                          body: bytes) -> None:
    chunks = _small_png_chunks()
    with pytest.raises(InputImageError, match="not a readable PNG"):
        _load(tmp_path, _png([chunks[0], (kind, body), *chunks[1:]]), "x.png")


def test_png_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    """11000 x 11000 (121 M pixels) is under Pillow's own bomb limit (2x), and was
    decoded: ~500 MB from a 118 kB file."""
    header = struct.pack(">IIBBBBB", 11000, 11000, 8, 0, 0, 0, 0)
    data = _png([(b"IHDR", header), (b"IDAT", zlib.compress(b"\x00" * 11001)), (b"IEND", b"")])
    with pytest.raises(InputImageError, match="too large"):
        _load(tmp_path, data, "x.png")


