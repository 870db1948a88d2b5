"""Scoring an ensemble out of fold: per-fold-calibrated logits averaged on the
images every run scored, and refused when the runs' folds differ."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from shared.errors import ConfigurationError  # noqa: E402
from shared.findings import FINDINGS  # noqa: E402
from training.classify import read_oof  # noqa: E402
from training.ensemble import average_runs  # noqa: E402


def _run(folder: Path, rows: list[tuple[str, int, float]]) -> Path:
    folder.mkdir()
    with (folder / "oof-foldcal.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient", "source", "fold",
                         *[f"label_{f}" for f in FINDINGS], *[f"logit_{f}" for f in FINDINGS]])
        for i, (name, fold, logit) in enumerate(rows):
            writer.writerow([name, i, "nih", fold, *([1] + [0] * 13),
                             *(["nan"] * 14 if np.isnan(logit) else [f"{logit + j}" for j in range(14)])])
    return folder


def test_the_ensemble_averages_calibrated_logits_on_common_images(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", [("x.png", 0, 1.0), ("y.png", 1, -2.0), ("z.png", 2, float("nan"))])
    b = _run(tmp_path / "b", [("x.png", 0, 3.0), ("y.png", 1, 0.0), ("z.png", 2, 5.0)])
    oof = read_oof(average_runs([a, b], tmp_path / "e"))
    assert list(oof["image"]) == ["x.png", "y.png"]  # z: a held it out of no fold it ran
    assert np.allclose(oof["logits"][:, 0], [2.0, -1.0]) and np.allclose(oof["logits"][:, 5], [7.0, 4.0])
    assert list(oof["fold"]) == [0, 1] and oof["labels"][0, 0] == 1


def test_runs_on_different_folds_are_refused(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", [("x.png", 0, 1.0), ("y.png", 1, -2.0)])
    b = _run(tmp_path / "b", [("x.png", 1, 3.0), ("y.png", 0, 0.0)])
    with pytest.raises(ConfigurationError, match="different folds"):
        average_runs([a, b], tmp_path / "e")


def test_a_run_without_fold_calibration_is_named(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", [("x.png", 0, 1.0)])
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigurationError, match="calibrate-folds --run"):
        average_runs([a, tmp_path / "b"], tmp_path / "e")
