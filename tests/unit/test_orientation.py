"""The image guard's orientation check, DICOM body part and modality, and a
JPEG cut short (issue 20, defects 2 and 11)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from edge_agent import orientation
from edge_agent.guard_model import OrientationParameters, orientation_from_json
from edge_agent.imaging import load_image
from edge_agent.input_checks import check_body_part_and_modality
from edge_agent.ood import check_chest_radiograph
from shared.errors import CorruptImageError, NotChestRadiographError
from tests.images import chest_like
from training.guard import dump, fit_orientation, orientation_json

NIH_FILM = "00000001_000.png"
"""The film of the issue: rotated 90 degrees it was diagnosed (triage 2)."""


def _film(data_folder: Path) -> np.ndarray:
    return load_image(data_folder / "nih-cxr14-sample" / "images" / NIH_FILM).pixels


@pytest.mark.realdata
def test_upright_nih_film_passes_and_turned_ones_are_refused_saying_how(data_folder: Path) -> None:
    film = _film(data_folder)
    assert check_chest_radiograph(film).ok
    expected = {
        "rotated 90 degrees clockwise": np.rot90(film, 3),
        "upside down (rotated 180 degrees)": np.rot90(film, 2),
        "rotated 90 degrees counter-clockwise": np.rot90(film, 1),
        "mirrored top-bottom": film[::-1],
    }
    for looks, turned in expected.items():
        result = check_chest_radiograph(np.ascontiguousarray(turned))
        assert not result.ok, looks
        assert result.orientation == looks
        with pytest.raises(NotChestRadiographError, match=f"x.png: the film looks {looks[:12]}"):
            result.raise_if_not_ok("x.png")


def test_synthetic_chest_like_films_are_upright() -> None:
    for seed in range(3):
        verdict = orientation.check_orientation(chest_like(512, seed))
        assert verdict.ok and verdict.looks == "upright"


def test_undo_inverts_every_transform() -> None:
    picture = np.arange(12 * 12).reshape(12, 12)
    for name, transform in orientation.TRANSFORMS.items():
        assert np.array_equal(orientation.undo(name, transform(picture)), picture), name


def _films(count: int, seed: int) -> list[np.ndarray]:
    """Pictures with a top, a bottom, a left and a right: bright at the top, a blob on the right."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96] / 96.0
    films = []
    for _ in range(count):
        picture = 200 - 150 * y + 60 * np.exp(-((x - 0.72) ** 2 + (y - 0.6) ** 2) / 0.01)
        films.append(np.clip(picture + rng.normal(0, 12, picture.shape), 0, 255).astype(np.uint8))
    return films


def test_fit_learns_which_way_is_up_and_refuses_the_rest() -> None:
    parameters = fit_orientation(_films(60, seed=1))
    assert parameters.fitted_on == 60 and np.isfinite(parameters.turn_margin)
    for film in _films(10, seed=2):
        assert orientation.check_orientation(film, parameters).ok
        for name, transform in list(orientation.TRANSFORMS.items())[1:]:
            verdict = orientation.check_orientation(np.ascontiguousarray(transform(film)), parameters)
            assert not verdict.ok, name
    # the written parameters read back the same
    again = orientation_from_json(json.loads(dump(orientation_json(parameters))))
    assert isinstance(again, OrientationParameters)
    assert np.allclose(again.turn_weights, parameters.turn_weights, atol=1e-4)
    assert again.mirror_margin == parameters.mirror_margin


def test_shipped_parameters_are_fitted() -> None:
    shipped = orientation.shipped_parameters()
    assert shipped.fitted_on > 500
    assert np.isfinite(shipped.turn_margin) and np.isfinite(shipped.mirror_margin)
    assert float(np.abs(shipped.turn_weights).sum()) > 0


def _header(**values: str) -> Dataset:
    dataset = Dataset()
    for key, value in values.items():
        setattr(dataset, key, value)
    return dataset


def test_body_part_and_modality() -> None:
    for accepted in ({}, {"BodyPartExamined": "CHEST"}, {"BodyPartExamined": ""},
                     {"BodyPartExamined": "CHEST PA", "Modality": "DX"}, {"Modality": "CR"},
                     {"Modality": "DR", "BodyPartExamined": "THORAX"}, {"Modality": "OT"}):
        check_body_part_and_modality(_header(**accepted), "x.dcm")
    with pytest.raises(NotChestRadiographError, match="Body Part Examined 'SKULL' is not the chest"):
        check_body_part_and_modality(_header(BodyPartExamined="SKULL", Modality="CR"), "x.dcm")
    with pytest.raises(NotChestRadiographError, match="Modality 'CT' is not a radiograph"):
        check_body_part_and_modality(_header(Modality="CT", BodyPartExamined="CHEST"), "x.dcm")


def _jpeg(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_half_a_jpeg_is_corrupt_not_a_non_chest_picture(tmp_path: Path, mode: str) -> None:
    data = _jpeg(chest_like(512, 0), mode)
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    assert check_chest_radiograph(load_image(whole).pixels).ok
    half = tmp_path / "half.jpg"
    half.write_bytes(data[:len(data) // 2] + b"\xff\xd9")  # cut short, end marker kept (a copy tool's)
    with pytest.raises(CorruptImageError, match="half.jpg: JPEG data ends early"):
        load_image(half)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptImageError, match="cut.jpg"):
        load_image(cut)


def test_errors_name_the_file_not_a_memory_buffer(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    odd = tmp_path / "scan.jpg"
    odd.write_bytes(b"hello, this is text" * 20)
    for file in (path, odd):
        with pytest.raises(CorruptImageError) as caught:
            load_image(file)
        assert "BytesIO" not in str(caught.value) and " at 0x" not in str(caught.value)
        assert str(caught.value).startswith(file.name)
