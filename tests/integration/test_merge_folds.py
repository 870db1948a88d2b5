"""Folds of one cross-validation run in several processes and joined give the
same out-of-fold predictions as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from training.classify import read_oof  # noqa: E402
from training.merge_folds import _best_epochs_from_log  # noqa: E402

pytestmark = pytest.mark.realdata
GOLDENHOUR = [sys.executable, "-m", "shared.cli"]


def test_folds_run_apart_and_joined_match_one_process(data_folder: Path, tmp_path: Path) -> None:
    env = {**os.environ, "GOLDENHOUR_DATA_DIR": str(data_folder), "OMP_NUM_THREADS": "1"}
    common = ["train", "classify", "--limit", "60", "--size", "64", "--views", "2", "--epochs", "2",
              "--folds", "3", "--no-final", "--cache-file", str(tmp_path / "cache.pt")]
    for out, only in (("all", []), ("p1", ["--only-folds", "0"]), ("p2", ["--only-folds", "1,2"])):
        subprocess.run([*GOLDENHOUR, *common, "--out", str(tmp_path / out), *only], env=env, check=True,
                       capture_output=True, timeout=600)
    assert not (tmp_path / "p1" / "fold1.pt").exists() and (tmp_path / "p2" / "fold1.pt").exists()
    joined = subprocess.run([*GOLDENHOUR, "train", "merge-folds", "--part", str(tmp_path / "p1"),
                             "--part", str(tmp_path / "p2"), "--out", str(tmp_path / "joined"),
                             "--cache-file", str(tmp_path / "cache.pt")], env=env, check=True,
                            capture_output=True, text=True, timeout=600)
    assert "joined 2 parts" in joined.stdout
    one, both = read_oof(tmp_path / "all" / "oof.csv"), read_oof(tmp_path / "joined" / "oof.csv")
    assert list(one["image"]) == list(both["image"]) and len(one["image"]) == 60
    assert np.abs(one["logits"] - both["logits"]).max() < 1e-3
    summary = json.loads((tmp_path / "joined" / "run.json").read_text())
    assert summary["best_epochs"] == json.loads((tmp_path / "all" / "run.json").read_text())["best_epochs"]
    assert "--only-folds 0" in summary["command"] and "merge-folds" in summary["command"]
    # parts trained otherwise are refused
    other = tmp_path / "p3"
    subprocess.run([*GOLDENHOUR, *common, "--out", str(other), "--only-folds", "2", "--lr", "0.01"], env=env,
                   check=True, capture_output=True, timeout=600)
    refused = subprocess.run([*GOLDENHOUR, "train", "merge-folds", "--part", str(tmp_path / "p1"),
                              "--part", str(other), "--out", str(tmp_path / "bad"),
                              "--cache-file", str(tmp_path / "cache.pt")], env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode != 0 and "other settings" in refused.stderr + refused.stdout


def test_best_epochs_are_read_from_the_log_of_older_fold_files(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "val_auc": 0.6}, {"epoch": 2, "val_auc": 0.7}, {"epoch": 3, "val_auc": 0.65},
            {"epoch": 1, "val_auc": 0.5}, {"epoch": 2, "val_auc": 0.55},
            {"epoch": 1, "val_auc": 0.9}]  # a third fold cut short, its model never saved
    (tmp_path / "epochs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert _best_epochs_from_log(tmp_path, [0, 1]) == {0: 2, 1: 2}
