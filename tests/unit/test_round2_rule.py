"""The pre-registered shipping rule of model round 2, applied to made-up runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the train extra is not installed")

from shared.findings import FINDINGS  # noqa: E402
from training.round2_rule import decide  # noqa: E402


def _run(folder: Path, logits: np.ndarray, labels: np.ndarray, hits: list[bool]) -> Path:
    folder.mkdir()
    with (folder / "oof.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient", "source", "fold", *[f"label_{f}" for f in FINDINGS],
                         *[f"logit_{f}" for f in FINDINGS]])
        for i, (y, z) in enumerate(zip(labels, logits, strict=True)):
            writer.writerow([f"{i:08d}_000.png", i, "x", i % 5, *y.tolist(), *[f"{v:.6f}" for v in z]])
    (folder / "localisation.json").write_text(json.dumps(
        [{"image": f"{i:08d}_000.png", "finding": "Effusion", "hit": h} for i, h in enumerate(hits)]))
    return folder


def test_b_ships_only_when_it_points_better_and_is_not_shown_worse(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 14)) < 0.3).astype(int)
    good = labels * 2.0 + rng.normal(0, 1, labels.shape)
    worse = labels * 0.5 + rng.normal(0, 1, labels.shape)
    a = _run(tmp_path / "a", good, labels, [True] * 10 + [False] * 20)
    b_better_points = _run(tmp_path / "b", good + rng.normal(0, 0.01, labels.shape), labels,
                           [True] * 15 + [False] * 15)
    verdict = decide(a, b_better_points, rounds=40)
    assert verdict.pick == "b" and verdict.pointing_b > verdict.pointing_a
    assert verdict.difference_ci95[0] < 0 < verdict.difference_ci95[1]
    b_worse_auc = _run(tmp_path / "c", worse, labels, [True] * 30)
    verdict = decide(a, b_worse_auc, rounds=40)
    assert verdict.pick == "a" and verdict.difference_ci95[1] < 0
    b_no_better_points = _run(tmp_path / "d", good, labels, [True] * 10 + [False] * 20)
    assert decide(a, b_no_better_points, rounds=40).pick == "a"


def test_lite1_replaces_the_recipe_only_when_shown_better_and_pointing_about_as_well(tmp_path: Path) -> None:
    from training.round3_rule import pick

    rng = np.random.default_rng(1)
    labels = (rng.random((300, 14)) < 0.3).astype(int)
    base = labels * 1.0 + rng.normal(0, 1, labels.shape)
    stronger = labels * 2.5 + rng.normal(0, 1, labels.shape)
    b = _run(tmp_path / "b", base, labels, [True] * 15 + [False] * 15)  # 50% pointing
    assert pick(b, _run(tmp_path / "c1", stronger, labels, [True] * 14 + [False] * 16), rounds=40)[0] == "c"
    # better AUC, but pointing 10 points lower: the recipe stays
    assert pick(b, _run(tmp_path / "c2", stronger, labels, [True] * 12 + [False] * 18), rounds=40)[0] == "b"
    # not shown better (the same scores, a little noise): the recipe stays
    same = base + rng.normal(0, 0.01, labels.shape)
    choice, verdict = pick(b, _run(tmp_path / "c3", same, labels, [True] * 30), rounds=40)
    assert choice == "b" and verdict.difference_ci95[0] <= 0


def test_cut8_ships_only_when_it_wins_on_all_folds_and_holds_on_the_unseen_ones(tmp_path: Path) -> None:
    from training.round5_rule import pick

    rng = np.random.default_rng(2)
    labels = (rng.random((500, 14)) < 0.3).astype(int)
    base = labels * 1.0 + rng.normal(0, 1, labels.shape)
    folds = np.arange(500) % 5
    b = _run(tmp_path / "b", base, labels, [True] * 15 + [False] * 15)
    stronger = labels * 2.5 + rng.normal(0, 1, labels.shape)
    assert pick(b, _run(tmp_path / "d1", stronger, labels, [True] * 15 + [False] * 15), rounds=40)[0] == "d"
    # far better on folds 0 and 1 (enough to win overall) but worse on 2-4: B stays
    mixed = np.where(np.isin(folds, [0, 1])[:, None], labels * 6.0 + rng.normal(0, 0.2, labels.shape),
                     labels * 0.8 + rng.normal(0, 1, labels.shape))
    d2 = _run(tmp_path / "d2", mixed, labels, [True] * 15 + [False] * 15)
    choice, every, unseen = pick(b, d2, rounds=40)
    assert every.difference_ci95[0] > 0 and unseen.images == 300 and unseen.auc_b < unseen.auc_a
    assert choice == "b"


OOF = Path(__file__).resolve().parents[2] / "docs" / "model-round2" / "oof"


def test_the_committed_out_of_fold_tables_repeat_the_recorded_verdicts() -> None:
    """docs/model-round2/results.md: amendment 5 picked D (shipped as 1.3.0), amendments 6 to 8 kept it."""
    from training.round3_rule import pick as round3
    from training.round5_rule import pick as round5

    choice, every, unseen = round5(OOF / "b5", OOF / "d5", rounds=200)
    assert choice == "d" and every.images == 1335 and every.pointing_pairs == 972
    assert round(every.auc_a, 4) == 0.7119 and round(every.auc_b, 4) == 0.7255
    assert unseen.images == 802 and unseen.auc_b > unseen.auc_a
    kept, verdict = round3(OOF / "d5", OOF / "f6", rounds=200)
    assert kept == "b" and verdict.images == 533 and verdict.difference_ci95[1] < 0
    kept, verdict = round3(OOF / "d5", OOF / "f18", rounds=200)  # amendment 7: folds 2-3
    assert kept == "b" and verdict.images == 539 and verdict.difference_ci95[1] < 0
    kept, verdict = round3(OOF / "d5", OOF / "g5", rounds=200)  # amendment 8: all 5 folds
    assert kept == "b" and verdict.images == 1335 and verdict.difference_ci95[1] < 0
    assert round(verdict.auc_b, 4) == 0.7117 and verdict.pointing_b > verdict.pointing_a
