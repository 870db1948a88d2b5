"""``train merge-folds``: join the folds of one cross-validation that ran in several
processes (``train classify --only-folds``) into one run folder.

Torch trains these small tops faster as one single-threaded process per core
than as one process using both cores, so the folds of a split can run side by
side. Every fold model scores its held-out patients again here, from the same
cached views, so the joined ``oof.csv`` is exactly what one process would
have written; the split, the settings and each fold's held-out images are
checked to be the same in every part.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from training.calibrate import fit_calibration
from training.classify import JRZECH, CvResult, fresh_model, read_oof, save_run, write_oof
from training.data import load_sample
from training.folds import patient_folds
from training.metrics import expected_calibration_error, mean_auc
from training.train import TrainConfig, predict_cached


def _best_epochs_from_log(run: Path, folds: list[int]) -> dict[int, int]:
    """Each fold's best epoch from ``epochs.jsonl`` (folds logged in order, epoch 1
    starting each), for fold files saved before they recorded it."""
    segments: list[list[dict[str, float]]] = []
    for line in (run / "epochs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["epoch"] == 1:
            segments.append([])
        segments[-1].append(row)
    best = {}
    for fold, rows in zip(sorted(folds), segments, strict=False):
        aucs = [r.get("val_auc", -1.0) for r in rows]
        best[fold] = int(rows[int(np.argmax(aucs))]["epoch"])
    return best


def merge_folds(parts: list[Path], out: Path, data_root: Path, cache: torch.Tensor,
                command: str, *, partial: bool = False) -> dict[str, object]:
    """Join ``parts`` into ``out``; returns the summary written to ``out/run.json``.
    With ``partial``, folds no part holds stay unscored (as ``--max-folds`` leaves them)."""
    summaries = [json.loads((p / "run.json").read_text(encoding="utf-8")) for p in parts]
    config_raw = summaries[0]["config"]
    for part, summary in zip(parts, summaries, strict=True):
        if summary["config"] != config_raw or summary["folds"] != summaries[0]["folds"]:
            raise ConfigurationError(f"{part} was trained with other settings than {parts[0]}")
    raw = dict(config_raw)
    raw.pop("augment", None)
    config = TrainConfig(**raw)
    k = int(summaries[0]["folds"])
    sample = load_sample(data_root, with_teacher=False)
    names = read_oof(parts[0] / "oof.csv", scored_only=False)["image"].tolist()
    position = {name: i for i, name in enumerate(sample.names)}
    dataset = sample.subset(np.array([position[name] for name in names]))
    if cache.shape[1] != len(dataset):
        raise ConfigurationError("the cached views are for other images")
    folds = patient_folds(dataset.patients, dataset.labels, k, config.seed)
    logits = np.full(dataset.labels.shape, np.nan, dtype=np.float32)
    tta = np.full(dataset.labels.shape, np.nan, dtype=np.float32)
    best_epochs: list[int] = []
    out.mkdir(parents=True, exist_ok=True)
    for fold in range(k):
        source = next((p for p in parts if (p / f"fold{fold}.pt").is_file()), None)
        if source is None:
            if partial:
                continue
            raise ConfigurationError(f"no part holds fold {fold}")
        saved = torch.load(source / f"fold{fold}.pt", weights_only=True)
        held = np.flatnonzero(folds == fold)
        if saved["held"] != held.tolist():
            raise ConfigurationError(f"fold {fold} of {source} held out other images than this split")
        model = fresh_model(config)
        model.load_state_dict(saved["state_dict"], strict=False)
        index = torch.as_tensor(held)
        logits[held] = predict_cached(model, cache[0, index])
        tta[held] = np.mean([predict_cached(model, cache[v, index]) for v in range(cache.shape[0])], axis=0)
        if "best_epoch" in saved:
            best_epochs.append(int(saved["best_epoch"]))
        else:
            present = [f for f in range(k) if (source / f"fold{f}.pt").is_file()]
            best_epochs.append(_best_epochs_from_log(source, present)[fold])
        if source != out:
            shutil.copyfile(source / f"fold{fold}.pt", out / f"fold{fold}.pt")
    result = CvResult(folds, logits, [], 0.0, tta)
    write_oof(out / "oof.csv", dataset, result)
    write_oof(out / "oof-tta.csv", dataset, CvResult(folds, tta, [], 0.0))
    scored = ~np.isnan(logits[:, 0])
    dataset = dataset.subset(np.flatnonzero(scored))
    logits, tta = logits[scored], tta[scored]
    calibration = fit_calibration(logits, dataset.labels)
    jr = np.array([s == JRZECH for s in dataset.sources])
    summary = {**{k_: v for k_, v in summaries[0].items() if k_ != "config"},
               "images": len(dataset), "patients": int(len(np.unique(dataset.patients))),
               "oof_mean_auc": mean_auc(dataset.labels, logits),
               "oof_mean_auc_jrzech": mean_auc(dataset.labels[jr], logits[jr]),
               "jrzech_images": int(jr.sum()),
               "oof_mean_auc_tta": mean_auc(dataset.labels, tta),
               "oof_mean_auc_jrzech_tta": mean_auc(dataset.labels[jr], tta[jr]),
               "best_epochs": best_epochs,
               "ece_before": expected_calibration_error(dataset.labels, 1 / (1 + np.exp(-logits))),
               "ece_after": expected_calibration_error(dataset.labels, calibration.apply(logits)),
               "calibration": asdict(calibration), "labels": [str(f) for f in FINDINGS],
               "cv_seconds": sum(float(s.get("cv_seconds", 0.0)) for s in summaries),
               "command": " && ".join([*(str(s["command"]) for s in summaries), command])}
    save_run(out, config, summary)
    return summary
