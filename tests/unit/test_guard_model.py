"""The image guard's parameters as a model: fitted by ``goldenhour train guard``,
listed in the manifest with their sha256, and read by the edge through it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from edge_agent.guard_model import GUARD_MODEL, load_guard, shipped_guard
from shared.manifest import (
    DEFAULT_MODELS_DIR,
    Manifest,
    ModelManifestError,
    describe_file,
    load_manifest,
    save_manifest,
)
from tests.images import chest_like
from training.cli import app
from training.guard import fit_statistics, fitting_half, nih_films

runner = CliRunner()


def test_the_shipped_guard_is_a_verified_model_of_the_manifest() -> None:
    guard = shipped_guard()
    entry = load_manifest().find(GUARD_MODEL)
    assert guard.key == entry.key and entry.task == "guard"
    assert entry.command.startswith("goldenhour train guard")
    assert guard.statistics.fitted_on == 1335 and guard.orientation.fitted_on == 639
    assert list(guard.statistics.ranges) == entry.labels


def _copy_guard(models: Path) -> Path:
    """The shipped guard's entry and files in a models folder of their own; its statistics file."""
    entry = load_manifest().find(GUARD_MODEL)
    for file in entry.files:
        (models / file.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEFAULT_MODELS_DIR / file.path, models / file.path)
    save_manifest(Manifest(models=[entry]), models)
    return models / entry.files[0].path


def test_an_altered_malformed_or_missing_guard_is_refused(tmp_path: Path) -> None:
    statistics = _copy_guard(tmp_path)
    assert load_guard(tmp_path).statistics == shipped_guard().statistics
    data = json.loads(statistics.read_text())
    data["distance_limit"] = 99.0
    statistics.write_text(json.dumps(data))
    with pytest.raises(ModelManifestError, match="sha256"):
        load_guard(tmp_path)
    # Signed off in the manifest, but the mean has a value too few.
    data["mean"] = data["mean"][:-1]
    statistics.write_text(json.dumps(data))
    entry = load_manifest(tmp_path).find(GUARD_MODEL)
    files = [describe_file(tmp_path, statistics, "json"), *entry.files[1:]]
    save_manifest(Manifest(models=[entry.model_copy(update={"files": files})]), tmp_path)
    with pytest.raises(ModelManifestError, match="malformed parameters.*mean"):
        load_guard(tmp_path)
    save_manifest(Manifest(), tmp_path)
    with pytest.raises(ModelManifestError, match="no model chest-guard"):
        load_guard(tmp_path)


def _data_folder(root: Path, count: int = 130) -> Path:
    """A data folder shaped like the NIH sample: synthetic chest-like films, one per patient."""
    images = root / "nih-cxr14-sample" / "images"
    images.mkdir(parents=True)
    with open(root / "nih-cxr14-sample" / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Patient ID"])
        for index in range(count):
            name = f"{index:08d}_000.png"
            Image.fromarray(chest_like(128, seed=index)).save(images / name)
            writer.writerow([name, "No Finding", str(index + 1)])
    return root


def test_train_guard_writes_a_model_the_edge_loads(tmp_path: Path) -> None:
    data, models = _data_folder(tmp_path / "data"), tmp_path / "models"
    fitting = sum(fitting_half(str(index + 1)) for index in range(130))
    assert fitting >= 50
    result = runner.invoke(app, ["guard", "--version", "0.1.0", "--data", str(data),
                                 "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    guard = load_guard(models, version="0.1.0")
    assert guard.key == "chest-guard@0.1.0"
    assert guard.statistics == fit_statistics(film.pixels for film in nih_films(data))
    assert guard.orientation.fitted_on == fitting
    entry = load_manifest(models).find(GUARD_MODEL)
    assert [file.path for file in entry.files] == ["chest-guard/0.1.0/statistics.json",
                                                   "chest-guard/0.1.0/orientation.json"]
    assert "nih-cxr14-sample/images (130 PNGs" in entry.data and "Not for clinical use" in entry.notes
    # A fit never overwrites a version the edges may have checked by its sha256.
    before = (models / "manifest.json").read_bytes()
    again = runner.invoke(app, ["guard", "--version", "0.1.0", "--data", str(data),
                                "--models-dir", str(models)])
    assert again.exit_code == 2 and "give a new --version" in again.output
    assert (models / "manifest.json").read_bytes() == before
