"""Out-of-fold predictions pooled without per-fold scale artefacts.

Each fold model stops at its own epoch, so its logits have their own scale;
pooling raw logits of five models lowers a pooled AUC for reasons that have
nothing to do with ranking. Here each fold model is calibrated on its *own
inner early-stopping slice* (the patient-held-out part of its training data,
never the fold it scores): per finding, Platt scaling fitted on that slice's
predictions and applied to the fold's held-out logits. The result is written
as ``oof-foldcal.csv`` (calibrated log-odds in the logit columns), which
``train evaluate`` and ``train compare-runs`` read like any ``oof.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from training.calibrate import fit_calibration
from training.classify import CvResult, fresh_model, read_oof, write_oof
from training.data import load_pixels, load_sample
from training.folds import patient_folds
from training.models import build
from training.train import TrainConfig, cache_views, predict_cached

FILE = "oof-foldcal.csv"


def calibrate_folds(run: Path, data_root: Path, cache: torch.Tensor | None = None) -> Path:
    """Write ``oof-foldcal.csv`` for a run with fold models; ``cache`` (V, N, ...) reuses
    the run's cached views (view 0 is used), else view 0 is computed."""
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    raw = dict(summary["config"])
    raw.pop("augment", None)
    config = TrainConfig(**raw)
    oof = read_oof(run / "oof.csv", scored_only=False)
    dataset = load_sample(data_root, with_teacher=False)
    if list(oof["image"]) != dataset.names:
        raise ValueError(f"{run / 'oof.csv'} does not list the sample's images in order")
    if cache is None:
        template, _ = build(config.backbone, config.cut)
        one = TrainConfig(**{**config.to_dict(), "views": 1, "augment": config.augment})
        cache = cache_views(template, load_pixels(dataset, config.size), one)
    features = cache[0]
    logits = np.full(oof["logits"].shape, np.nan)
    for fold in np.unique(oof["fold"]):
        path = run / f"fold{fold}.pt"
        if not path.is_file():
            continue
        held, train = np.flatnonzero(oof["fold"] == fold), np.flatnonzero(oof["fold"] != fold)
        # the same inner slice cross_validate stopped this fold on
        inner = patient_folds(dataset.patients[train], dataset.labels[train], 8, config.seed + int(fold))
        stop = train[inner == 0]
        model = fresh_model(config)
        model.load_state_dict(torch.load(path, weights_only=True)["state_dict"], strict=False)
        calibration = fit_calibration(predict_cached(model, features[torch.as_tensor(stop)]),
                                      dataset.labels[stop])
        z = predict_cached(model, features[torch.as_tensor(held)])
        logits[held] = z / np.asarray(calibration.temperature) + np.asarray(calibration.bias)
    out = run / FILE
    write_oof(out, dataset, CvResult(oof["fold"], logits, [], 0.0))
    return out
