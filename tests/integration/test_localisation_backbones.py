"""The pointing game scores a run's fold models with the run's own backbone, also
for a cross-validation without a final fit (its configuration is in run.json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from rich.console import Console  # noqa: E402

from shared.findings import FINDINGS  # noqa: E402
from training.boxes import load_sample_boxes  # noqa: E402
from training.data import SAMPLE_SUBDIR  # noqa: E402
from training.localisation import evaluate_heat_maps  # noqa: E402
from training.models import build  # noqa: E402
from training.train import TrainConfig  # noqa: E402

pytestmark = pytest.mark.realdata


def test_a_lite1_run_without_a_final_model_is_scored_with_lite1(data_folder: Path, tmp_path: Path) -> None:
    boxes = load_sample_boxes(data_folder / SAMPLE_SUBDIR / "boxes.csv")
    images = sorted({b.image for b in boxes})[:3]
    config = TrainConfig(backbone="efficientnet-lite1", cut=15, size=64, views=1)
    (tmp_path / "run.json").write_text(json.dumps({"config": config.to_dict()}), encoding="utf-8")
    model, _ = build("efficientnet-lite1", 15)
    torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if not k.startswith("trunk.")}},
               tmp_path / "fold0.pt")
    with (tmp_path / "oof.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient", "source", "fold",
                         *[f"label_{f}" for f in FINDINGS], *[f"logit_{f}" for f in FINDINGS]])
        for i, name in enumerate(images):
            writer.writerow([name, i, "nih", 0, *([0] * 14), *([0.0] * 14)])
    assert not (tmp_path / "model.pt").exists()
    results = evaluate_heat_maps(tmp_path, data_folder, Console(quiet=True))
    expected = {(b.image, b.finding) for b in boxes if b.image in images}
    assert {(r.image, r.finding) for r in results} == expected and {r.fold for r in results} == {0}
    assert all(0 < r.peak_x < 1 and 0 < r.peak_y < 1 for r in results)
