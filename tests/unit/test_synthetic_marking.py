"""The guarantee that synthetic images only ever train: every file is marked,
real-data loaders and evaluation sets refuse them, and the edge never
diagnoses one as a patient's case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.imaging import load_image
from shared.errors import ConfigurationError, InputImageError, SyntheticImageError
from shared.synthetic import FILE_PREFIX, MARK_KEY, read_mark
from tests.images import chest_like

pytest.importorskip("torch", reason="the train extra is not installed")

from training.data import load_nih, read_grey  # noqa: E402
from training.synthetic import (  # noqa: E402
    SyntheticDataError,
    assert_real,
    is_synthetic,
    load_set,
    write_set,
)


def _write(out: Path, n: int = 3) -> Path:
    images = np.stack([chest_like(256, seed=i) for i in range(n)])
    labels = np.zeros((n, 14), dtype=np.uint8)
    labels[:, 7] = 1
    generator = {"name": "goldenhour-pggan", "checkpoint_sha256": "ab" * 32}
    return write_set(out, images, labels, generator=generator,
                     stem="hernia", seed=0, command="goldenhour train synthesize --finding Hernia")


def test_every_file_is_marked_by_name_text_chunk_and_manifest(tmp_path: Path) -> None:
    manifest = json.loads(_write(tmp_path).read_text())
    assert manifest["synthetic"] is True and manifest["not_for_clinical_use"] is True
    assert len(manifest["files"]) == 3
    for entry in manifest["files"]:
        path = tmp_path / entry["file"]
        assert entry["file"].startswith(FILE_PREFIX) and entry["synthetic"] is True
        assert entry["labels"] == ["Hernia"]
        with Image.open(path) as image:
            mark = read_mark(image.info)
        assert mark is not None and mark["synthetic"] is True and mark["labels"] == ["Hernia"]
        assert is_synthetic(path)
    again = json.loads(_write(tmp_path, 2).read_text())
    assert len({e["file"] for e in again["files"]}) == 5


def test_marked_set_loads_for_training_and_refuses_tampering(tmp_path: Path) -> None:
    _write(tmp_path)
    loaded = load_set(tmp_path)
    assert loaded.pixels.shape == (3, 256, 256) and loaded.labels[:, 7].all()
    victim = tmp_path / loaded.names[0]
    Image.fromarray(chest_like(256, seed=9)).save(victim)  # rewritten without the mark
    with pytest.raises(SyntheticDataError, match="sha256"):
        load_set(tmp_path)
    with pytest.raises(SyntheticDataError, match="no synthetic.json"):
        load_set(tmp_path / "nowhere")


def test_an_evaluation_set_with_a_synthetic_image_is_refused() -> None:
    assert_real(["00000001_000.png", "00000002_000.png"], np.array([False, False]))
    with pytest.raises(SyntheticDataError, match="evaluation set"):
        assert_real(["00000001_000.png", "x.png"], np.array([False, True]))
    with pytest.raises(SyntheticDataError):
        assert_real([f"{FILE_PREFIX}hernia-00000.png"])


def test_real_data_loaders_refuse_marked_images(tmp_path: Path) -> None:
    _write(tmp_path / "synthetic")
    marked = next((tmp_path / "synthetic").glob("*.png"))
    # A synthetic file renamed to look like an NIH image is still refused by its mark.
    disguised = tmp_path / "images" / "00000001_000.png"
    disguised.parent.mkdir()
    disguised.write_bytes(marked.read_bytes())
    with pytest.raises(ConfigurationError, match="synthetic"):
        read_grey(disguised, 64)
    labels = tmp_path / "labels.csv"
    labels.write_text("Image Index,Finding Labels,Patient ID\n"
                      f"{marked.name},Hernia,1\n", encoding="utf-8")
    (tmp_path / "images" / marked.name).write_bytes(marked.read_bytes())
    with pytest.raises(ConfigurationError, match="synthetic image"):
        load_nih(labels, tmp_path / "images")


def test_the_edge_never_diagnoses_a_synthetic_image(tmp_path: Path) -> None:
    _write(tmp_path)
    marked = next(tmp_path.glob("*.png"))
    disguised = tmp_path / "ambulance-xray.png"
    disguised.write_bytes(marked.read_bytes())
    with pytest.raises(SyntheticImageError, match="synthetic image"):
        load_image(disguised)
    assert issubclass(SyntheticImageError, InputImageError)
    plain = tmp_path / "real.png"
    Image.fromarray(chest_like(256, seed=1)).save(plain)
    assert load_image(plain).pixels.shape == (256, 256)
    assert read_mark({MARK_KEY: "not json"}) == {"synthetic": True}
