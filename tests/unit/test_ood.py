"""The out-of-distribution guard: other images are flagged, real chest X-rays pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.guard_model import statistics_from_json
from edge_agent.imaging import load_image
from edge_agent.ood import FEATURES, check_chest_radiograph, features, shipped_parameters
from shared.errors import InputImageError, NotChestRadiographError
from training.guard import dump, fit_statistics, statistics_json
from training.guard_samples import synthetic_non_cxrs

SYNTHETIC = synthetic_non_cxrs()


@pytest.mark.parametrize(("name", "pixels"), SYNTHETIC, ids=[name for name, _ in SYNTHETIC])
def test_synthetic_non_chest_images_are_flagged(name: str, pixels: np.ndarray) -> None:
    result = check_chest_radiograph(pixels)
    assert not result.ok and result.reasons, (name, result)


def test_blank_and_elongated_images_say_why() -> None:
    blank = check_chest_radiograph(np.full((256, 256), 90, np.uint8))
    assert not blank.ok and blank.reasons == ["a blank image (one grey level)"]
    long = check_chest_radiograph(SYNTHETIC[8][1][:100])
    assert not long.ok and "times as long as wide" in long.reasons[0]


def test_a_colour_source_is_flagged_whatever_its_grey_levels(data_folder: Path) -> None:
    pixels = load_image(data_folder / "nih-cxr14-sample" / "images" / "00000001_000.png").pixels
    assert check_chest_radiograph(pixels).ok
    result = check_chest_radiograph(pixels, source_was_colour=True)
    assert not result.ok and result.reasons == [
        "a colour image: X-rays are grey-scale (a photo or a screenshot?)"]


def test_colour_photo_through_the_loader_is_flagged(tmp_path: Path) -> None:
    y, x = np.mgrid[0:256, 0:256]
    photo = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    image = load_image(tmp_path / "photo.jpg")
    result = check_chest_radiograph(image.pixels, source_was_colour=image.source_was_colour)
    assert not result.ok and "colour" in result.reasons[0]


def test_raise_if_not_ok() -> None:
    result = check_chest_radiograph(SYNTHETIC[0][1])
    with pytest.raises(NotChestRadiographError, match="scan.png: not a chest radiograph") as caught:
        result.raise_if_not_ok("scan.png")
    assert isinstance(caught.value, InputImageError)


def test_features_are_all_present_and_finite() -> None:
    values = features(SYNTHETIC[-1][1])
    assert tuple(values) == FEATURES and all(np.isfinite(list(values.values())))
    shipped = shipped_parameters()
    assert set(shipped.ranges) == set(FEATURES) == set(shipped.medians)
    assert shipped.fitted_on == 1335


def test_fitted_parameters_round_trip_through_their_file() -> None:
    rng = np.random.default_rng(3)
    images = []
    for _ in range(60):
        coarse = rng.normal(size=(8, 8))
        image = Image.fromarray(((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8))
        images.append(np.asarray(image.resize((128, 128), Image.Resampling.BICUBIC)))
    fitted = fit_statistics(images)
    assert statistics_from_json(json.loads(dump(statistics_json(fitted))), FEATURES) == fitted
    with pytest.raises(ValueError, match="at least 50"):
        fit_statistics(images[:10])


# --- real data --------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_chest_x_rays_are_accepted(data_folder: Path) -> None:
    """The NIH sample holds 1,335 images, two of them stored as negatives
    (00017625_000, 00017999_000), which the guard rightly flags."""
    paths = sorted((data_folder / "nih-cxr14-sample" / "images").glob("*.png"))
    assert len(paths) == 1335
    rejected = {path.name: check_chest_radiograph(load_image(path).pixels) for path in paths}
    rejected = {name: result for name, result in rejected.items() if not result.ok}
    # 5 refused by the grey statistics; the orientation check (issue 20) refuses about 1 % more,
    # mostly white-out AP portables (docs/image-guard.md), hence 1.5 %.
    assert len(rejected) / len(paths) <= 0.015, {name: r.reasons for name, r in rejected.items()}
    for name in ("00017625_000.png", "00017999_000.png"):
        assert "negative" in rejected[name].reasons[0]


@pytest.mark.realdata
def test_real_dicoms(data_folder: Path) -> None:
    """MONOCHROME2 passes; the MONOCHROME1 file holds the same stored pixels, so
    read per the standard it is a negative, and the guard says so."""
    mono2 = load_image(data_folder / "dicom" / "siim-cxr-monochrome2.dcm")
    assert check_chest_radiograph(mono2.pixels).ok
    mono1 = check_chest_radiograph(load_image(data_folder / "dicom" / "siim-cxr-monochrome1.dcm").pixels)
    assert not mono1.ok and "negative" in mono1.reasons[0]


def test_library_sample_images_are_flagged(tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")
    flagged = []
    for name in ("astronaut", "camera", "coffee", "coins", "moon", "page", "text", "brick", "rocket",
                 "chelsea", "clock", "shepp_logan_phantom"):
        array = np.asarray(getattr(data, name)())
        if array.dtype.kind == "f":
            array = (array / array.max() * 255).astype(np.uint8)
        path = tmp_path / f"{name}.png"
        Image.fromarray(array).save(path)
        try:
            image = load_image(path)
        except InputImageError:
            flagged.append(name)
            continue
        if not check_chest_radiograph(image.pixels, source_was_colour=image.source_was_colour).ok:
            flagged.append(name)
    assert len(flagged) == 12
