"""Ensembles of classifiers: scored out of fold, and exported as one model.

Two runs cross-validated on the same folds give each held-out image one
prediction per run, both from models that never saw it, so their average is an
honest out-of-fold ensemble. Each run's logits are first calibrated per fold
(``oof-foldcal.csv`` from ``train calibrate-folds``): members stopped at their own
epochs, and averaging raw logits would let the one with the widest scale decide.

For the edge, :class:`MeanEnsemble` wraps several classifiers into one module with
the single classifier's contract (``logits``, ``cam``; logits are the map's mean
plus the bias), so an exported ensemble is a drop-in model file whose cost is the
sum of its members'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.errors import ConfigurationError
from training.classify import read_oof, write_oof_table
from training.fold_calibration import FILE as FOLDCAL

ENSEMBLE_OOF = "oof.csv"


class MeanEnsemble(nn.Module):
    """The mean of several classifiers' logits and class-activation maps."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ConfigurationError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [member(image) for member in self.members]
        grids = {tuple(int(n) for n in cam.shape[-2:]) for _, cam in outputs}
        if len(grids) != 1 and not torch.jit.is_tracing():
            raise ConfigurationError(f"members' activation maps differ in size: {sorted(grids)}")
        logits = torch.stack([logit for logit, _ in outputs]).mean(0)
        cam = torch.stack([cam for _, cam in outputs]).mean(0)
        return logits, cam


def average_runs(runs: list[Path], out: Path) -> Path:
    """Write ``out/oof.csv``: each image's per-fold-calibrated logits averaged over
    ``runs``, on the images every run scored (they must share folds)."""
    if len(runs) < 2:
        raise ConfigurationError("give at least two runs to average")
    tables = []
    for run in runs:
        path = run / FOLDCAL
        if not path.is_file():
            raise ConfigurationError(f"{path} not found: run 'goldenhour train calibrate-folds "
                                     f"--run {run}' first")
        tables.append(read_oof(path))
    common = sorted(set.intersection(*[set(t["image"]) for t in tables]))
    if not common:
        raise ConfigurationError("the runs share no scored image")
    rows = [{n: i for i, n in enumerate(t["image"])} for t in tables]
    index = [np.array([r[n] for n in common]) for r in rows]
    for table, idx in zip(tables[1:], index[1:], strict=True):
        if not np.array_equal(table["fold"][idx], tables[0]["fold"][index[0]]):
            raise ConfigurationError("the runs used different folds: their average would not be out of fold")
    logits = np.mean([t["logits"][i] for t, i in zip(tables, index, strict=True)], axis=0)
    out.mkdir(parents=True, exist_ok=True)
    first, i0 = tables[0], index[0]
    write_oof_table(out / ENSEMBLE_OOF, {**{k: first[k][i0] for k in ("patient", "source", "fold", "labels")},
                                         "image": common, "logits": logits})
    (out / "ensemble.json").write_text(json.dumps(
        {"members": [str(r) for r in runs], "images": len(common),
         "logits": f"mean of each member's {FOLDCAL}"}, indent=2) + "\n", encoding="utf-8")
    return out / ENSEMBLE_OOF
