"""Cross-validated training of a classifier and the final fit on all data.

``cross_validate`` gives the honest estimate: patient-wise stratified folds,
each fold's model early-stopped on an inner patient-held-out slice of its own
training part (never on the fold it is scored on), out-of-fold logits for
every image. ``fit_final`` then trains on all images for the median of the
folds' best epoch counts; that is the shipped model, and the out-of-fold
figures are its estimate.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.findings import FINDINGS
from training.data import NihDataset
from training.folds import patient_folds
from training.metrics import mean_auc
from training.models import ChestClassifier, build
from training.train import FitResult, TrainConfig, fit, predict_cached

logger = logging.getLogger(__name__)

JRZECH = "jrzech/reproduce-chexnet"
Report = Callable[[str], None]


@dataclass
class CvResult:
    """Out-of-fold logits and what each fold did."""

    folds: np.ndarray
    logits: np.ndarray
    fits: list[FitResult]
    seconds: float
    tta_logits: np.ndarray | None = None
    """Mean logits over every cached view (test-time augmentation)."""

    @property
    def best_epochs(self) -> list[int]:
        return [f.best_epoch for f in self.fits]


def fresh_model(config: TrainConfig, template: ChestClassifier | None = None) -> ChestClassifier:
    """A new classifier; its trunk is shared with ``template`` (the trunk never trains)."""
    model, _ = build(config.backbone, config.cut)
    if template is not None:
        model.trunk = template.trunk
    return model


@dataclass
class Extra:
    """Synthetic training images for one fold: cached views (V, M, ...) and labels (M, 14)."""

    cache: torch.Tensor
    labels: np.ndarray


def with_extra(cache: torch.Tensor, labels: np.ndarray, teacher: np.ndarray | None, fit_idx: np.ndarray,
               extra: Extra | None) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None, np.ndarray]:
    """Append ``extra`` rows after the real ones, for training only (``fit_idx`` grows;
    held-out and early-stopping indices keep pointing at real images)."""
    if extra is None or not len(extra.labels):
        return cache, labels, teacher, fit_idx
    n = len(labels)
    blank = None if teacher is None else np.full((len(extra.labels), teacher.shape[1]), np.nan, np.float32)
    return (torch.cat([cache, extra.cache], dim=1), np.concatenate([labels, extra.labels]),
            None if teacher is None or blank is None else np.concatenate([teacher, blank]),
            np.concatenate([fit_idx, n + np.arange(len(extra.labels))]))


def cross_validate(dataset: NihDataset, cache: torch.Tensor, trunk_model: ChestClassifier,
                   config: TrainConfig, k: int, out_dir: Path, report: Report,
                   max_folds: int | None = None,
                   extra: Callable[[int, np.ndarray, np.ndarray], Extra | None] | None = None,
                   box_masks: torch.Tensor | None = None,
                   only_folds: list[int] | None = None) -> CvResult:
    """k-fold patient-wise cross-validation on cached views; ``max_folds`` runs only
    the first folds of the same split (a cheaper comparison; the other images'
    logits stay NaN), ``only_folds`` only the listed ones (folds shared between
    processes, joined by ``train merge-folds``). ``extra(fold, train, held)`` may
    add synthetic training images for a fold (see :mod:`training.synthetic_recipe`)."""
    folds = patient_folds(dataset.patients, dataset.labels, k, config.seed)
    logits = np.full(dataset.labels.shape, np.nan, dtype=np.float32)
    tta = np.full(dataset.labels.shape, np.nan, dtype=np.float32)
    fits = []
    started = time.perf_counter()
    for fold in range(min(k, max_folds or k)):
        if only_folds is not None and fold not in only_folds:
            continue
        train = np.flatnonzero(folds != fold)
        held = np.flatnonzero(folds == fold)
        inner = patient_folds(dataset.patients[train], dataset.labels[train], 8, config.seed + fold)
        fit_idx, stop_idx = train[inner != 0], train[inner == 0]
        torch.manual_seed(config.seed + fold)
        model = fresh_model(config, trunk_model)
        teacher = _teacher_without(dataset.teacher, held)
        fold_cache, fold_labels, teacher, fit_idx = with_extra(
            cache, dataset.labels, teacher, fit_idx, extra(fold, train, held) if extra else None)
        result = fit(model, fold_cache, fold_labels, teacher, fit_idx, stop_idx, config,
                     log_path=out_dir / "epochs.jsonl",
                     on_epoch=lambda row, f=fold: report(_epoch_line(f, row)),
                     box_masks=_padded(box_masks, len(fold_labels)))
        logits[held] = predict_cached(model, cache[0, torch.as_tensor(held)])
        tta[held] = np.mean([predict_cached(model, cache[v, torch.as_tensor(held)])
                             for v in range(cache.shape[0])], axis=0)
        fits.append(result)
        if not (torch.distributed.is_initialized() and torch.distributed.get_rank() != 0):
            # Fold models score their held-out patients again later (heat-map evaluation).
            torch.save({"state_dict": {k: v for k, v in model.state_dict().items()
                                       if not k.startswith("trunk.")}, "held": held.tolist(),
                        "best_epoch": result.best_epoch},
                       out_dir / f"fold{fold}.pt")
        report(f"fold {fold}: best epoch {result.best_epoch}, inner AUC {result.best_val_auc:.4f}, "
               f"held-out AUC {mean_auc(dataset.labels[held], logits[held]):.4f} "
               f"({len(held)} images, {result.seconds:.0f} s)")
    result = CvResult(folds, logits, fits, time.perf_counter() - started, tta)
    if not (torch.distributed.is_initialized() and torch.distributed.get_rank() != 0):
        write_oof(out_dir / "oof.csv", dataset, result)
        write_oof(out_dir / "oof-tta.csv", dataset, CvResult(folds, tta, fits, result.seconds))
    return result


def _teacher_without(teacher: np.ndarray | None, held: np.ndarray) -> np.ndarray | None:
    """The teacher's predictions with the held-out images blanked, so a held-out
    image's teacher output can never shape the model that scores it."""
    if teacher is None:
        return None
    masked = teacher.copy()
    masked[held] = np.nan
    return masked


def _epoch_line(fold: int, row: dict[str, float]) -> str:
    val = f" inner AUC {row['val_auc']:.4f}" if "val_auc" in row else ""
    return f"fold {fold} epoch {int(row['epoch'])}: loss {row['loss']:.4f}{val} ({row['seconds']:.0f} s)"


def fit_final(dataset: NihDataset, cache: torch.Tensor, trunk_model: ChestClassifier,
              config: TrainConfig, epochs: int, out_dir: Path, report: Report,
              extra: Extra | None = None, box_masks: torch.Tensor | None = None) -> ChestClassifier:
    """Train on every image (and ``extra`` synthetic ones) for ``epochs`` epochs (no early stopping)."""
    torch.manual_seed(config.seed)
    model = fresh_model(config, trunk_model)
    final = TrainConfig(**{**config.to_dict(), "epochs": epochs, "augment": config.augment})
    cache, labels, teacher, index = with_extra(cache, dataset.labels, dataset.teacher,
                                               np.arange(len(dataset)), extra)
    fit(model, cache, labels, teacher, index, None, final,
        log_path=out_dir / "epochs.jsonl", on_epoch=lambda row: report(_epoch_line(-1, row)),
        box_masks=_padded(box_masks, len(labels)))
    return model.eval()


def _padded(masks: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    """Box masks for ``rows`` training rows: synthetic rows appended after the real
    ones have no boxes."""
    if masks is None or len(masks) >= rows:
        return masks
    return torch.cat([masks, masks.new_zeros((rows - len(masks), *masks.shape[1:]))])


def write_oof(path: Path, dataset: NihDataset, result: CvResult) -> None:
    """One row per image: name, patient, source, fold, labels and logits."""
    write_oof_table(path, {"image": dataset.names, "patient": dataset.patients, "source": dataset.sources,
                           "fold": result.folds, "labels": dataset.labels, "logits": result.logits})


def write_oof_table(path: Path, table: dict[str, Any]) -> None:
    """Write arrays shaped as :func:`read_oof` returns them (its inverse)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient", "source", "fold",
                         *[f"label_{f}" for f in FINDINGS], *[f"logit_{f}" for f in FINDINGS]])
        for i, name in enumerate(table["image"]):
            writer.writerow([name, int(table["patient"][i]), table["source"][i], int(table["fold"][i]),
                             *[int(v) for v in table["labels"][i]],
                             *[f"{v:.6f}" for v in table["logits"][i]]])


def read_oof(path: Path, scored_only: bool = True) -> dict[str, np.ndarray]:
    """The arrays of an ``oof.csv``; rows of folds that a ``--max-folds`` run
    skipped (no logits) are left out unless ``scored_only`` is False."""
    with path.open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle)
                if not scored_only or r[f"logit_{FINDINGS[0]}"].lower() != "nan"]
    return {
        "image": np.array([r["image"] for r in rows]),
        "patient": np.array([int(r["patient"]) for r in rows]),
        "source": np.array([r["source"] for r in rows]),
        "fold": np.array([int(r["fold"]) for r in rows]),
        "labels": np.array([[int(r[f"label_{f}"]) for f in FINDINGS] for r in rows]),
        "logits": np.array([[float(r[f"logit_{f}"]) for f in FINDINGS] for r in rows]),
    }


def save_run(out_dir: Path, config: TrainConfig, summary: dict[str, object]) -> None:
    """The run's configuration and headline figures, for the manifest and the card."""
    (out_dir / "run.json").write_text(json.dumps({"config": config.to_dict(), **summary}, indent=2,
                                                 default=str) + "\n", encoding="utf-8")
