"""AUC with bootstrap confidence intervals, and calibration error.

Bootstrap resamples patients, not images, so that a patient's several images
do not make an interval look tighter than the data allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from shared.findings import FINDINGS


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean over findings that have both classes present."""
    values = [_auc(labels[:, k], scores[:, k]) for k in range(labels.shape[1])]
    return float(np.nanmean(values))


@dataclass(frozen=True)
class AucRow:
    """One finding's AUC with its 95% interval and counts."""

    finding: str
    auc: float
    low: float
    high: float
    positives: int
    n: int


def auc_table(labels: np.ndarray, scores: np.ndarray, patients: np.ndarray, *,
              rounds: int = 1000, seed: int = 0) -> tuple[list[AucRow], AucRow]:
    """Per-finding AUC and the mean, each with a patient-bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    boot = np.full((rounds, labels.shape[1]), np.nan)
    for r in range(rounds):
        picked = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        for k in range(labels.shape[1]):
            boot[r, k] = _auc(labels[picked, k], scores[picked, k])
    rows = []
    for k in range(labels.shape[1]):
        low, high = np.nanpercentile(boot[:, k], (2.5, 97.5))
        rows.append(AucRow(str(FINDINGS[k]) if labels.shape[1] == len(FINDINGS) else str(k),
                           _auc(labels[:, k], scores[:, k]), float(low), float(high),
                           int(labels[:, k].sum()), len(labels)))
    means = np.nanmean(boot, axis=1)
    low, high = np.nanpercentile(means, (2.5, 97.5))
    mean = AucRow("mean", mean_auc(labels, scores), float(low), float(high),
                  int(labels.sum()), len(labels))
    return rows, mean


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE over all findings pooled: mean |observed rate - predicted| weighted by bin size."""
    y = labels.reshape(-1).astype(float)
    p = probabilities.reshape(-1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)
