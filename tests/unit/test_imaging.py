"""Reading X-ray files, and the placeholder pipeline's output contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.imaging import load_image
from edge_agent.pipeline import DiagnosisPipeline
from shared.errors import InputImageError
from shared.findings import FINDINGS
from shared.messages import Position


def _chest_like(size: int = 256) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return ((np.sin(x / 17.0) + np.cos(y / 23.0) + 2) * 60).astype(np.uint8)


def test_png_8_and_16_bit(tmp_path: Path) -> None:
    eight = tmp_path / "eight.png"
    Image.fromarray(_chest_like()).save(eight)
    image = load_image(eight)
    assert image.format == "png" and image.pixels.dtype == np.uint8
    assert (image.width, image.height) == (256, 256) and len(image.sha256) == 64

    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(_chest_like().astype(np.uint16) * 200).save(sixteen)
    loaded = load_image(sixteen)
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.max() == 255


def test_jpeg_and_colour_are_read_as_grey(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(np.stack([_chest_like()] * 3, axis=-1)).save(path)
    image = load_image(path)
    assert image.format == "jpeg" and image.pixels.ndim == 2


@pytest.mark.parametrize(("name", "content", "message"), [
    ("garbage.png", b"not an image at all", "not a readable PNG or JPEG"),
    ("truncated.dcm", b"\x00" * 128 + b"DICM" + b"\x02\x00", "DICOM"),
    ("empty.png", b"", "not a readable"),
])
def test_corrupt_files_raise_clear_errors(tmp_path: Path, name: str, content: bytes,
                                          message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputImageError, match=message):
        load_image(path)


def test_tiny_flat_and_missing_images(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tiny)
    with pytest.raises(InputImageError, match="too small"):
        load_image(tiny)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((128, 128), 7, np.uint16)).save(flat)
    with pytest.raises(InputImageError, match="no contrast"):
        load_image(flat)
    with pytest.raises(InputImageError, match="cannot read"):
        load_image(tmp_path / "missing.png")


def test_placeholder_pipeline_is_labelled_and_content_dependent(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(_chest_like()).save(a)
    Image.fromarray(_chest_like()[::-1].copy()).save(b)
    pipeline = DiagnosisPipeline()
    first = pipeline.run(a, ambulance_id="amb-1", position=Position(lat=1, lon=2))
    again = pipeline.run(a, ambulance_id="amb-1", position=Position(lat=1, lon=2))
    other = pipeline.run(b, ambulance_id="amb-1", position=Position(lat=1, lon=2))
    assert first.model.placeholder and "placeholder" in first.model.name
    assert [s.finding for s in first.findings] == list(FINDINGS)
    assert [s.probability for s in first.findings] == [s.probability for s in again.findings]
    assert [s.probability for s in first.findings] != [s.probability for s in other.findings]
    ranked = sorted(first.findings, key=lambda s: -s.probability)
    assert first.top3 == [s.finding for s in ranked[:3]]
    assert any("placeholder" in reason for reason in first.triage.reasons)
    assert set(first.timings_ms) == {"decode", "preprocess", "classify", "postprocess", "triage"}
    assert first.image.thumbnail_jpeg.startswith(b"\xff\xd8")


def test_real_dicom_monochrome1_is_inverted(data_folder: Path) -> None:
    """The two files hold the same stored pixels; only the photometric
    interpretation differs, so read as displayed one is the other's negative."""
    mono2 = load_image(data_folder / "dicom" / "siim-cxr-monochrome2.dcm")
    mono1 = load_image(data_folder / "dicom" / "siim-cxr-monochrome1.dcm")
    assert mono2.format == "dicom" and mono2.pixels.shape == (1024, 1024)
    assert np.array_equal(mono1.pixels, 255 - mono2.pixels)
    assert mono2.pixels.mean() != pytest.approx(mono1.pixels.mean(), abs=5)


def test_real_nih_png(data_folder: Path) -> None:
    image = load_image(data_folder / "nih-cxr14-sample" / "images" / "00000001_000.png")
    assert image.pixels.shape == (512, 512)
