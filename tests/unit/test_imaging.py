"""Reading X-ray files, and the placeholder pipeline's output contract."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.imaging import load_image
from edge_agent.operators import XrayInput
from edge_agent.pipeline import DiagnosisPipeline
from shared.errors import InputImageError
from shared.findings import FINDINGS
from tests.images import chest_like


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
    Image.fromarray(chest_like()).save(a)
    other_chest = chest_like().astype(np.int16)
    other_chest[300:450, 60:220] += 40  # a denser lower left lung field
    Image.fromarray(np.clip(other_chest, 0, 255).astype(np.uint8)).save(b)
    pipeline = DiagnosisPipeline()
    first = pipeline.run(XrayInput.read(a))
    again = pipeline.run(XrayInput.read(a))
    other = pipeline.run(XrayInput.read(b))
    assert first.model.placeholder and "placeholder" in first.model.name
    assert [s.finding for s in first.findings] == list(FINDINGS)
    assert [s.probability for s in first.findings] == [s.probability for s in again.findings]
    assert [s.probability for s in first.findings] != [s.probability for s in other.findings]
    ranked = sorted(first.findings, key=lambda s: -s.probability)
    assert first.top3 == [s.finding for s in ranked[:3]]
    assert any("placeholder" in reason for reason in first.triage.reasons)
    assert {"decode", "preprocess", "classify", "postprocess", "triage"} <= set(first.timings_ms)
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


# --- DICOM ingest: synthetic files for each path -------------------------------------------------------

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import (  # noqa: E402
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from shared.errors import (  # noqa: E402
    BlankImageError,
    CorruptImageError,
    ImageTooLargeError,
    NoPixelDataError,
    NotFrontalViewError,
    PhotometricInterpretationError,
    UnsupportedImageError,
)


def _ramp12(rows: int = 96, cols: int = 80) -> np.ndarray:
    """12-bit stored values covering 0..4095 with some structure."""
    y, x = np.mgrid[0:rows, 0:cols]
    return np.minimum(x * 4095 // (cols - 1) + (y % 7) * 3, 4095).astype(np.uint16)


def _dataset(pixels: np.ndarray, *, bits_stored: int | None = None, signed: bool = False,
             photometric: str = "MONOCHROME2", **attributes: object) -> Dataset:
    """A DX 'for presentation' dataset holding ``pixels`` uncompressed."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _linear_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 to 0..255."""
    c, w = centre - 0.5, width - 1
    out = ((values - c) / w + 0.5) * 255
    out[values <= c - w / 2] = 0
    out[values > c + w / 2] = 255
    return out


def test_12_bit_rescale_then_linear_window(tmp_path: Path) -> None:
    stored = _ramp12()
    ds = _dataset(stored, bits_stored=12, RescaleSlope="2", RescaleIntercept="-1024",
                  WindowCenter="2048", WindowWidth="4000", ViewPosition="AP")
    image = load_image(_save(ds, tmp_path / "w.dcm"))
    expected = _linear_window(stored * 2.0 - 1024, 2048, 4000)
    assert image.display == "window LINEAR" and image.bits_stored == 12
    assert image.view_position == "AP" and image.photometric == "MONOCHROME2"
    assert np.abs(image.pixels.astype(float) - expected).max() <= 1.0


def test_window_is_applied_after_rescale_not_before(tmp_path: Path) -> None:
    """A window in rescaled units (e.g. HU-like) only makes sense after the rescale."""
    stored = _ramp12()
    ds = _dataset(stored, bits_stored=12, RescaleSlope="1", RescaleIntercept="-2000",
                  WindowCenter="0", WindowWidth="1000")
    pixels = load_image(_save(ds, tmp_path / "r.dcm")).pixels.astype(float)
    expected = _linear_window(stored - 2000.0, 0, 1000)
    assert np.abs(pixels - expected).max() <= 1.0
    assert pixels.min() == 0 and pixels.max() == 255


def test_sigmoid_window(tmp_path: Path) -> None:
    stored = _ramp12()
    ds = _dataset(stored, bits_stored=12, WindowCenter="2000", WindowWidth="1500",
                  VOILUTFunction="SIGMOID")
    image = load_image(_save(ds, tmp_path / "s.dcm"))
    expected = 255 / (1 + np.exp(-4 * (stored - 2000.0) / 1500))
    assert image.display == "window SIGMOID"
    assert np.abs(image.pixels.astype(float) - expected).max() <= 1.0


def test_voi_lut_sequence_is_preferred_to_the_window(tmp_path: Path) -> None:
    stored = _ramp12()
    lut = (np.sqrt(np.arange(4096) / 4095) * 1023).astype(np.uint16)  # a gamma curve, 10-bit output
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 10])  # LUT Descriptor: entries, first value, bits
    item.add_new(0x00283006, "OW", lut.tobytes())  # LUT Data
    ds = _dataset(stored, bits_stored=12, VOILUTSequence=Sequence([item]),
                  WindowCenter="100", WindowWidth="10")  # a window that would make it all white
    image = load_image(_save(ds, tmp_path / "l.dcm"))
    expected = lut[stored] / 1023 * 255
    assert image.display == "VOI LUT"
    assert np.abs(image.pixels.astype(float) - expected).max() <= 1.0


def test_signed_16_bit_without_voi_is_windowed_by_percentiles(tmp_path: Path) -> None:
    stored = (_ramp12().astype(np.int32) * 8 - 16000).astype(np.int16)
    ds = _dataset(stored, signed=True)
    image = load_image(_save(ds, tmp_path / "signed.dcm"))
    assert image.display == "percentiles" and image.bits_stored == 16
    assert image.pixels[:, 0].mean() < 20 and image.pixels[:, -1].mean() > 235


def test_monochrome1_is_inverted_after_the_window(tmp_path: Path) -> None:
    stored = _ramp12()
    common = {"bits_stored": 12, "WindowCenter": "2048", "WindowWidth": "4096"}
    mono2 = load_image(_save(_dataset(stored, **common), tmp_path / "m2.dcm"))  # type: ignore[arg-type]
    mono1 = load_image(_save(_dataset(stored, photometric="MONOCHROME1", **common),  # type: ignore[arg-type]
                             tmp_path / "m1.dcm"))
    assert np.array_equal(mono1.pixels, 255 - mono2.pixels)
    assert mono1.photometric == "MONOCHROME1"


def test_8_bit_dicom_without_voi_keeps_its_grey_levels(tmp_path: Path) -> None:
    stored = _chest_like(128)
    image = load_image(_save(_dataset(stored), tmp_path / "eight.dcm"))
    assert image.display == "as stored" and np.array_equal(image.pixels, stored)


def _compressed(ds: Dataset, syntax: str) -> Dataset:
    ds.compress(syntax)
    return ds


def test_rle_lossless(tmp_path: Path) -> None:
    stored = _ramp12()
    plain = load_image(_save(_dataset(stored, bits_stored=12, WindowCenter="2048", WindowWidth="4096"),
                             tmp_path / "plain.dcm"))
    ds = _compressed(_dataset(stored, bits_stored=12, WindowCenter="2048", WindowWidth="4096"), RLELossless)
    image = load_image(_save(ds, tmp_path / "rle.dcm"))
    assert image.transfer_syntax == RLELossless
    assert np.array_equal(image.pixels, plain.pixels)


@pytest.mark.parametrize(("syntax", "package"), [(JPEGLSLossless, "jpeg_ls"),
                                                 (JPEG2000Lossless, "openjpeg")])
def test_jpeg_ls_and_jpeg_2000_lossless(tmp_path: Path, syntax: str, package: str) -> None:
    from pydicom.pixels import get_encoder

    encoder = get_encoder(syntax)
    if not encoder.is_available:
        pytest.skip(f"no {syntax.name} encoder installed ({package}): "
                    f"{'; '.join(encoder.missing_dependencies)}")
    stored = _ramp12()
    plain = load_image(_save(_dataset(stored, bits_stored=12), tmp_path / "plain.dcm"))
    ds = _compressed(_dataset(stored, bits_stored=12), syntax)
    image = load_image(_save(ds, tmp_path / "c.dcm"))
    assert image.transfer_syntax == syntax
    assert np.array_equal(image.pixels, plain.pixels)


def _jpeg_dicom(pixels: np.ndarray, jpeg_size: tuple[int, int] | None = None) -> Dataset:
    """8-bit JPEG baseline: Pillow encodes, pydicom encapsulates."""
    from pydicom.encaps import encapsulate

    buffer = io.BytesIO()
    frame = Image.fromarray(pixels)
    if jpeg_size:
        frame = frame.resize(jpeg_size)
    frame.save(buffer, format="JPEG", quality=95)
    ds = _dataset(pixels)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    return ds


def test_jpeg_baseline(tmp_path: Path) -> None:
    stored = _chest_like(128)
    image = load_image(_save(_jpeg_dicom(stored), tmp_path / "j.dcm"))
    assert image.transfer_syntax == JPEGBaseline8Bit
    assert np.abs(image.pixels.astype(int) - stored).max() <= 6


def test_compressed_frame_larger_than_its_header_is_refused_before_decoding(tmp_path: Path) -> None:
    ds = _jpeg_dicom(_chest_like(128), jpeg_size=(1024, 1024))
    with pytest.raises(CorruptImageError, match="compressed frame is 1024x1024 but the DICOM header"):
        load_image(_save(ds, tmp_path / "liar.dcm"))


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL", "LLD", "RLO"])
def test_lateral_and_oblique_views_are_refused(tmp_path: Path, view: str) -> None:
    ds = _dataset(_chest_like(128), ViewPosition=view)
    with pytest.raises(NotFrontalViewError, match="not a frontal chest view"):
        load_image(_save(ds, tmp_path / "lat.dcm"))


@pytest.mark.parametrize("view", ["PA", "AP", "", None])
def test_frontal_or_unstated_views_are_read(tmp_path: Path, view: str | None) -> None:
    ds = _dataset(_chest_like(128))
    if view is not None:
        ds.ViewPosition = view
    assert load_image(_save(ds, tmp_path / "pa.dcm")).view_position == (view or None)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    ds = _dataset(_chest_like(128))
    del ds.PixelData
    with pytest.raises(NoPixelDataError, match="no pixel data"):
        load_image(_save(ds, tmp_path / "sr.dcm"))


def test_truncated_dicom(tmp_path: Path) -> None:
    data = _save(_dataset(_ramp12(), bits_stored=12), tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-4000])
    with pytest.raises(CorruptImageError, match="truncated"):
        load_image(cut)
    header_only = tmp_path / "header.dcm"
    header_only.write_bytes(data[:200])
    with pytest.raises(CorruptImageError, match="truncated"):
        load_image(header_only)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "YBR_FULL_422"])
def test_colour_dicom_is_refused_clearly(tmp_path: Path, photometric: str) -> None:
    rgb = np.stack([_chest_like(128)] * 3, axis=-1)
    ds = _dataset(rgb.reshape(128, 128 * 3)[:, :128], photometric=photometric)
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PixelData = rgb.tobytes()
    with pytest.raises(PhotometricInterpretationError, match="is colour, not a grey-scale radiograph"):
        load_image(_save(ds, tmp_path / "rgb.dcm"))


@pytest.mark.parametrize(("rows", "cols"), [(60000, 60000), (16385, 64), (9000, 9000)])
def test_absurd_dimensions_are_refused_from_the_header(tmp_path: Path, rows: int, cols: int) -> None:
    ds = _dataset(_chest_like(128), Rows=rows, Columns=cols)
    with pytest.raises(ImageTooLargeError, match="too large"):
        load_image(_save(ds, tmp_path / "bomb.dcm"))


@pytest.mark.parametrize(("allocated", "stored"), [(8, 4), (32, 32)])
def test_unsupported_bit_depths(tmp_path: Path, allocated: int, stored: int) -> None:
    ds = _dataset(_chest_like(128), BitsAllocated=allocated, BitsStored=stored, HighBit=stored - 1)
    with pytest.raises(UnsupportedImageError, match="bits stored"):
        load_image(_save(ds, tmp_path / "bits.dcm"))


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    ds = _jpeg_dicom(_chest_like(128))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2
    with pytest.raises(UnsupportedImageError, match="transfer syntax .* is not supported"):
        load_image(_save(ds, tmp_path / "mpeg.dcm"))


def test_window_that_hides_everything_is_a_blank_image(tmp_path: Path) -> None:
    ds = _dataset(_ramp12(), bits_stored=12, WindowCenter="60000", WindowWidth="10")
    with pytest.raises(BlankImageError, match="no contrast"):
        load_image(_save(ds, tmp_path / "black.dcm"))


def test_colour_photo_is_reported_but_grey_rgb_is_not(tmp_path: Path) -> None:
    grey = _chest_like()
    photo = np.stack([grey, np.roll(grey, 40, axis=1), 255 - grey], axis=-1)
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=90)
    assert load_image(tmp_path / "photo.jpg").source_was_colour

    as_rgb = np.stack([grey] * 3, axis=-1)
    as_rgb[10:20, 10:40] = (255, 0, 0)  # a small red marker, as on some exported X-rays
    Image.fromarray(as_rgb).save(tmp_path / "grey-rgb.png")
    loaded = load_image(tmp_path / "grey-rgb.png")
    assert not loaded.source_was_colour and loaded.pixels.ndim == 2


def test_16_bit_png_reports_its_depth(tmp_path: Path) -> None:
    path = tmp_path / "sixteen.png"
    Image.fromarray(_chest_like().astype(np.uint16) * 200).save(path)
    image = load_image(path)
    assert image.bits_stored == 16 and image.display == "percentiles"


def test_real_dicoms_are_frontal_8_bit_jpeg_baseline(data_folder: Path) -> None:
    """Both files store identical pixel values; only the photometric
    interpretation differs, so read per the DICOM standard they are negatives
    of each other (``test_real_dicom_monochrome1_is_inverted``)."""
    for name in ("siim-cxr-monochrome1.dcm", "siim-cxr-monochrome2.dcm"):
        image = load_image(data_folder / "dicom" / name)
        assert image.view_position == "PA" and image.bits_stored == 8
        assert image.transfer_syntax == JPEGBaseline8Bit and image.display == "as stored"


def test_missing_decoder_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels

    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg-libjpeg"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda syntax: Unavailable())
    with pytest.raises(UnsupportedImageError, match="no decoder installed .* pylibjpeg-libjpeg"):
        load_image(_save(_jpeg_dicom(_chest_like(128)), tmp_path / "j.dcm"))
