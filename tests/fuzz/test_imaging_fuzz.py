"""The edge's image decoders against mutated real DICOM and PNG files, and
crafted ones: only ``InputImageError`` (or an image) may come out, each file
within a time bound, and memory stays bounded.

Every file is decoded in a child process (``image_worker``), which is killed
if it takes longer than ``TIME_LIMIT_S`` and reports its peak RSS growth.
"""

from __future__ import annotations

import io
import multiprocessing
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.fuzz.budget import fuzz_settings
from tests.fuzz.image_worker import Decoded, serve

TIME_LIMIT_S = 5.0
"""Longest one decode may take (the real files decode in ~20 ms)."""
RSS_LIMIT_MB = 500.0
"""Largest growth of the decoder's peak RSS over its warmed-up baseline."""
PNG_SAMPLE = 24
"""Real PNGs (of the data folder's 1,335) that mutations start from."""


class Decoder:
    """Decodes files in a child process with a watchdog."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._context = multiprocessing.get_context("spawn")
        self._start()
        self.count = 0

    def _start(self) -> None:
        self._connection, child = self._context.Pipe()
        self._process = self._context.Process(target=serve, args=(child, str(self.folder)),
                                              name="fuzz-image-decoder", daemon=True)
        self._process.start()
        if not self._connection.poll(60) or self._connection.recv() != "ready":
            raise RuntimeError("image decoder process did not start")

    def decode(self, data: bytes, suffix: str) -> Decoded:
        """Decode ``data`` as a file with ``suffix``; a hang fails the test."""
        self.count += 1
        path = self.folder / f"input{suffix}"
        path.write_bytes(data)
        self._connection.send(str(path))
        if not self._connection.poll(TIME_LIMIT_S):
            self._process.kill()
            self._process.join()
            self._start()
            pytest.fail(f"decoding took more than {TIME_LIMIT_S} s: {len(data)} bytes as {suffix}")
        result: Decoded = self._connection.recv()
        return result

    def close(self) -> None:
        self._connection.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Decoder]:
    worker = Decoder(tmp_path_factory.mktemp("fuzz-images"))
    yield worker
    worker.close()


def assert_contained(result: Decoded, what: str) -> None:
    """Only success or InputImageError, in time and within the memory bound."""
    assert result.outcome in ("ok", "InputImageError"), f"{what}: {result.detail}"
    assert result.seconds < TIME_LIMIT_S, f"{what}: {result.seconds:.1f} s"
    assert result.rss_growth_mb < RSS_LIMIT_MB, f"{what}: RSS grew {result.rss_growth_mb:.0f} MB"


# -- byte-level damage -------------------------------------------------------------------
WORDS = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x01\x00",
         b"\x00\x40\x00\x00", b"\x01\x00\x00\x00")


@st.composite
def damaged(draw: st.DrawFn, data: bytes, hot: int) -> tuple[bytes, str]:
    """``data`` with a few flips, truncations, insertions or boundary words;
    positions mostly within the first ``hot`` bytes (headers)."""
    buffer = bytearray(data)
    how = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        end = min(hot, len(buffer)) if draw(st.integers(0, 4)) else len(buffer)
        position = draw(st.integers(min_value=0, max_value=max(end - 1, 0)))
        op = draw(st.sampled_from(("flip", "flip", "word", "insert", "delete", "truncate")))
        if op == "flip":
            buffer[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "word":
            buffer[position:position + 4] = draw(st.sampled_from(WORDS))
        elif op == "insert":
            buffer[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del buffer[position:position + draw(st.integers(1, 64))]
        else:
            del buffer[position:]
        how.append(f"{op}@{position}")
        if not buffer:
            break
    return bytes(buffer), " ".join(how)


@pytest.fixture(scope="module")
def real_dicoms(data_folder: Path) -> list[bytes]:
    return [(data_folder / "dicom" / f"siim-cxr-{name}.dcm").read_bytes()
            for name in ("monochrome1", "monochrome2")]


@pytest.fixture(scope="module")
def real_pngs(data_folder: Path) -> list[bytes]:
    paths = sorted((data_folder / "nih-cxr14-sample" / "images").glob("*.png"))[:PNG_SAMPLE]
    if not paths:
        pytest.skip("no PNG images in the data folder's nih-cxr14-sample/images")
    return [path.read_bytes() for path in paths]


def test_damaged_real_dicoms(decoder: Decoder, real_dicoms: list[bytes]) -> None:
    @fuzz_settings(150)
    @given(st.sampled_from(real_dicoms).flatmap(lambda data: damaged(data, hot=2048)),
           st.sampled_from((".dcm", ".bin")))
    def run(case: tuple[bytes, str], suffix: str) -> None:
        assert_contained(decoder.decode(case[0], suffix), case[1])

    run()


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunks.append((kind, data[position + 8:position + 8 + length]))
        position += 12 + length
    return chunks


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG from (type, data) chunks, with correct lengths and CRCs."""
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks)


ANCILLARY = (b"zTXt", b"iCCP", b"iTXt", b"tEXt", b"pHYs", b"sBIT", b"tRNS", b"PLTE", b"gAMA",
             b"cHRM", b"sRGB", b"bKGD", b"eXIf", b"acTL", b"fcTL", b"tIME", b"IDAT", b"IEND")


@st.composite
def corrupted_png(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """A real PNG with chunks changed and CRCs fixed (so the decoder goes deep),
    or plain byte damage (CRCs then fail)."""
    if draw(st.integers(0, 3)) == 0:
        result: tuple[bytes, str] = draw(damaged(data, hot=256))
        return result
    chunks = _png_chunks(data)
    how = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(("ihdr", "ihdr", "insert", "body", "drop", "split_idat")))
        if op == "ihdr" and chunks[0][0] == b"IHDR" and len(chunks[0][1]) == 13:
            width, height, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
            field = draw(st.sampled_from(("width", "height", "depth", "colour", "other")))
            big = st.sampled_from((0, 1, 63, 64, 513, 8192, 11000, 16384, 16385, 65535, 2**31 - 1, 2**32 - 1))
            if field == "width":
                width = draw(big)
            elif field == "height":
                height = draw(big)
            elif field == "depth":
                depth = draw(st.sampled_from((0, 1, 2, 4, 8, 16, 3, 32, 255)))
            elif field == "colour":
                colour = draw(st.sampled_from((0, 2, 3, 4, 6, 1, 5, 7, 255)))
            else:
                comp, filt, interlace = draw(st.tuples(*[st.sampled_from((0, 1, 255))] * 3))
            chunks[0] = (b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, comp, filt,
                                              interlace))
            how.append(f"IHDR {field}")
        elif op == "insert":
            kind = draw(st.sampled_from(ANCILLARY))
            body = draw(st.one_of(
                st.binary(max_size=64),
                st.sampled_from((b"k\x00\x00" + zlib.compress(b"a" * 4_000_000),
                                 b"k\x00\x01\x00\x00\x00" + zlib.compress(b"a" * 4_000_000)))))
            chunks.insert(draw(st.integers(1, len(chunks))), (kind, body))
            how.append(f"insert {kind.decode()}")
        elif op == "body" and len(chunks) > 1:
            index = draw(st.integers(0, len(chunks) - 1))
            kind, body = chunks[index]
            mutated, detail = draw(damaged(body, hot=len(body) or 1)) if body else (b"\x00", "")
            chunks[index] = (kind, mutated)
            how.append(f"{kind.decode(errors='replace')} body {detail}")
        elif op == "drop" and len(chunks) > 1:
            index = draw(st.integers(0, len(chunks) - 1))
            how.append(f"drop {chunks.pop(index)[0].decode(errors='replace')}")
        elif op == "split_idat":
            index = next((i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT"), None)
            if index is not None:
                body = chunks[index][1]
                cut = draw(st.integers(0, len(body)))
                chunks[index:index + 1] = [(b"IDAT", body[:cut]), (b"IDAT", body[cut:])]
                how.append("split IDAT")
    return png_bytes(chunks), "; ".join(how)


def test_corrupted_real_pngs(decoder: Decoder, real_pngs: list[bytes]) -> None:
    @fuzz_settings(250)
    @given(st.sampled_from(real_pngs).flatmap(corrupted_png))
    def run(case: tuple[bytes, str]) -> None:
        assert_contained(decoder.decode(case[0], ".png"), case[1])

    run()


# -- DICOM header tampering with pydicom ------------------------------------------------------
TAMPER: dict[str, st.SearchStrategy[Any]] = {
    "Rows": st.sampled_from((0, 1, 63, 512, 1023, 1025, 2048, 16384, 65535)),
    "Columns": st.sampled_from((0, 1, 63, 512, 1023, 1025, 2048, 16384, 65535)),
    "BitsAllocated": st.sampled_from((0, 1, 7, 8, 12, 16, 32, 64, 65535)),
    "BitsStored": st.sampled_from((0, 1, 8, 12, 16, 17, 64, 65535)),
    "HighBit": st.sampled_from((0, 7, 11, 15, 16, 65535)),
    "PixelRepresentation": st.sampled_from((0, 1, 2, 65535)),
    "SamplesPerPixel": st.sampled_from((0, 1, 3, 4, 65535)),
    "PlanarConfiguration": st.sampled_from((0, 1, 2)),
    "NumberOfFrames": st.sampled_from(("0", "1", "2", "1000", "-1", "1e9", "x")),
    "PhotometricInterpretation": st.sampled_from(("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR",
                                                  "YBR_FULL", "YBR_FULL_422", "", "JUNK")),
    "RescaleSlope": st.sampled_from(("0", "1", "-1", "1e-30", "1e30", "nan", "inf", "-inf")),
    "RescaleIntercept": st.sampled_from(("0", "-1024", "1e30", "nan", "-inf")),
    "WindowCenter": st.sampled_from(("0", "128", "-1e30", "1e30", "nan")),
    "WindowWidth": st.sampled_from(("0", "1", "-1", "256", "1e-30", "1e30", "nan", "inf")),
    "VOILUTFunction": st.sampled_from(("LINEAR", "LINEAR_EXACT", "SIGMOID", "JUNK")),
}
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                     "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                     "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1.99",
                     "1.2.3.4")


@st.composite
def tampered_dicom(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """A real DICOM with header attributes changed by pydicom."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    how = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(("set", "set", "set", "delete", "syntax", "pixels")))
        if op == "set":
            keyword = draw(st.sampled_from(sorted(TAMPER)))
            value = draw(TAMPER[keyword])
            try:
                setattr(dataset, keyword, value)
            except ValueError:  # pydicom refuses some values outright (NumberOfFrames 'x')
                how.append(f"{keyword}={value!r} refused by pydicom")
                continue
            how.append(f"{keyword}={value!r}")
        elif op == "delete":
            keyword = draw(st.sampled_from([*sorted(TAMPER), "PixelData"]))
            if keyword in dataset:
                delattr(dataset, keyword)
            how.append(f"del {keyword}")
        elif op == "syntax":
            syntax = draw(st.sampled_from(TRANSFER_SYNTAXES))
            dataset.file_meta.TransferSyntaxUID = syntax
            how.append(f"syntax {syntax}")
        elif "PixelData" in dataset:
            pixels = dataset.PixelData
            cut = draw(st.integers(0, len(pixels)))
            dataset.PixelData = draw(st.sampled_from((pixels[:cut], pixels[:cut] + b"\x00" * 7,
                                                      pixels[cut:], b"\xff" * 64)))
            how.append(f"PixelData cut at {cut}")
    buffer = io.BytesIO()
    try:
        dataset.save_as(buffer, enforce_file_format=False)
    except Exception as exc:  # some combinations cannot be written; then damage the bytes
        how.append(f"unwritable ({type(exc).__name__}); bytes damaged instead")
        damaged_bytes, detail = draw(damaged(data, hot=2048))
        return damaged_bytes, "; ".join([*how, detail])
    return buffer.getvalue(), "; ".join(how)


def test_tampered_real_dicom_headers(decoder: Decoder, real_dicoms: list[bytes]) -> None:
    @fuzz_settings(150)
    @given(st.sampled_from(real_dicoms).flatmap(tampered_dicom))
    def run(case: tuple[bytes, str]) -> None:
        assert_contained(decoder.decode(case[0], ".dcm"), case[1])

    run()


# -- crafted files: decompression bombs and hostile chunks (no data folder needed) ------------
def _bomb(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A valid PNG of zeros: tiny on disk, huge decoded."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\x00" * (1 + width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_bytes([(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)),
                      (b"IDAT", body), (b"IEND", b"")])


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(128 * 128).reshape(128, 128) % 251).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _with_chunk(kind: bytes, body: bytes) -> bytes:
    chunks = _png_chunks(_small_png())
    return png_bytes([chunks[0], (kind, body), *chunks[1:]])


CRAFTED = {
    "bomb 11000x11000 grey (121 M pixels, 118 kB)": lambda: _bomb(11000, 11000),
    "bomb 16384x8192 RGBA": lambda: _bomb(16384, 8192, colour=6),
    "at the limit: 8192x8192 16-bit grey": lambda: _bomb(8192, 8192, depth=16),
    "at the limit: 8000x8000 RGBA": lambda: _bomb(8000, 8000, colour=6),
    "IHDR 65535x65535, tiny IDAT": lambda: png_bytes(
        [(b"IHDR", struct.pack(">IIBBBBB", 65535, 65535, 8, 0, 0, 0, 0)),
         (b"IDAT", zlib.compress(b"\x00" * 100)), (b"IEND", b"")]),
    "IHDR 2^31-1 x 1": lambda: png_bytes(
        [(b"IHDR", struct.pack(">IIBBBBB", 2**31 - 1, 1, 8, 0, 0, 0, 0)),
         (b"IDAT", zlib.compress(b"\x00" * 100)), (b"IEND", b"")]),
    "zTXt inflating to 50 MB": lambda: _with_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 50 * 2**20)),
    "iCCP inflating to 50 MB": lambda: _with_chunk(b"iCCP", b"p\x00\x00" + zlib.compress(b"\0" * 50 * 2**20)),
    "truncated pHYs": lambda: _with_chunk(b"pHYs", b"\x00"),
    "fcTL outside the image": lambda: _with_chunk(b"fcTL", b"\x00" * 26),
    "acTL with 2^32-1 frames": lambda: _with_chunk(b"acTL", struct.pack(">II", 2**32 - 1, 0)),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_pngs_are_refused_in_time_and_memory(decoder: Decoder, name: str) -> None:
    result = decoder.decode(CRAFTED[name](), ".png")
    assert_contained(result, name)
    if name.startswith(("bomb", "IHDR", "zTXt", "iCCP", "truncated")):
        assert result.outcome == "InputImageError", result.detail
    if name.startswith(("bomb", "IHDR")):
        assert result.outcome == "InputImageError" and "too large" in result.detail, result.detail
