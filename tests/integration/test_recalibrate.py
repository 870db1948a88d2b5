"""A shipped classifier's files under a new version with the calibration and operating
points of a complete cross-validation: same bytes, new numbers, both commands named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from shared.findings import FINDINGS  # noqa: E402
from shared.manifest import (  # noqa: E402
    InputContract,
    Manifest,
    ModelEntry,
    describe_file,
    load_manifest,
    save_manifest,
)

pytestmark = pytest.mark.realdata
GOLDENHOUR = [sys.executable, "-m", "shared.cli"]


def test_recalibrate_moves_the_files_and_ships_the_operating_points(data_folder: Path,
                                                                    tmp_path: Path) -> None:
    env = {**os.environ, "GOLDENHOUR_DATA_DIR": str(data_folder), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    subprocess.run([*GOLDENHOUR, "train", "classify", "--limit", "120", "--size", "64", "--views", "1",
                    "--epochs", "1", "--folds", "3", "--no-final", "--out", str(run)], env=env, check=True,
                   capture_output=True, timeout=600)
    subprocess.run([*GOLDENHOUR, "train", "operating-points", "--run", str(run),
                    "--specificity-for", "Pneumothorax=0.95"], env=env, check=True, capture_output=True,
                   timeout=600)
    models = tmp_path / "models"
    old = models / "tiny" / "1.0.0"
    old.mkdir(parents=True)
    (old / "model.onnx").write_bytes(b"weights that must not change")
    (old / "export.json").write_text(json.dumps({"onnx_max_abs": 1e-5, "openvino_max_abs": 0.05,
                                                 "int8_max_abs": None, "auc_fp32": 0.9, "auc_int8": None,
                                                 "images": 120}))
    (models / "tiny" / "README.md").write_text("then the final fit on all\n  120 images for 3 epochs.")
    entry = ModelEntry(name="tiny", version="1.0.0", task="classifier", labels=[str(f) for f in FINDINGS],
                       input=InputContract(size=64),
                       files=[describe_file(models, old / "model.onnx", "onnx")],
                       outputs={"logits": "x"}, thresholds=[0.5] * 14, command="goldenhour train classify x",
                       data="tiny", created_at="2026-12-01")
    save_manifest(Manifest(models=[entry]), models)
    sha = entry.files[0].sha256
    subprocess.run([*GOLDENHOUR, "train", "recalibrate", "--run", str(run), "--name", "tiny",
                    "--from-version", "1.0.0", "--version", "1.0.1", "--models-dir", str(models)], env=env,
                   check=True,
                   capture_output=True, timeout=600)
    manifest = load_manifest(models)
    assert [m.key for m in manifest.models] == ["tiny@1.0.1"] and not old.exists()
    new = manifest.find("tiny")
    assert new.files[0].path == "tiny/1.0.1/model.onnx" and new.files[0].sha256 == sha
    assert new.operating_points is not None and new.thresholds == [p.threshold for p in new.operating_points]
    assert new.operating_points[FINDINGS.index("Pneumothorax")].target_specificity == 0.95
    assert new.reference_histogram is not None and len(new.reference_histogram.counts) == 14
    assert new.command.startswith("goldenhour train classify x && goldenhour train classify")
    assert "recalibrate" in new.command
    # the step whose points the entry ships is named between training and the new version
    assert new.command.index("train operating-points") < new.command.index("train recalibrate")
    assert "--specificity-for Pneumothorax=0.95" in new.command
    assert any(m.name == "mean_auc_oof" and m.ci95 for m in new.metrics)
    card = (models / "tiny" / "README.md").read_text()
    assert "for 3 (the weights of tiny@1.0.0, unchanged) epochs" in card
    assert "Operating points and the image-only triage" in card

