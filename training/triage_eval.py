"""How the image-only triage agrees with a triage derived from the labels.

Both sides go through the edge's own rule table (:func:`edge_agent.triage.triage`):
the label side with each labelled finding as a certain, suspected one
(pneumothorax -> 2; effusion, edema, consolidation, pneumonia -> 3; any other
finding -> 4; none -> 5), the image side with the out-of-fold probabilities
against cross-fitted operating points (each fold judged by thresholds fitted
on the other folds), so the figures are out of fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import cohen_kappa_score

from edge_agent.triage import triage
from shared.findings import FINDINGS, Finding
from shared.messages import FindingScore

LEVELS = (1, 2, 3, 4, 5)
PNEUMOTHORAX = FINDINGS.index(Finding.PNEUMOTHORAX)


def label_levels(labels: np.ndarray) -> np.ndarray:
    """The rule table applied to the radiologists' labels."""
    return np.array([triage([FindingScore(finding=f, probability=float(v), threshold=0.5)
                             for f, v in zip(FINDINGS, row, strict=True)]).level for row in labels])


def image_levels(flags: np.ndarray) -> np.ndarray:
    """The rule table applied to suspected flags (N, 14)."""
    return np.array([triage([FindingScore(finding=f, probability=1.0 if v else 0.0, threshold=0.5)
                             for f, v in zip(FINDINGS, row, strict=True)]).level for row in flags])


@dataclass(frozen=True)
class TriageAgreement:
    """Image-only triage against the label-derived levels, out of fold."""

    images: int
    confusion: list[list[int]]
    """Rows: label-derived level 1..5; columns: image level 1..5."""
    agreement: float
    kappa_quadratic: float
    kappa_ci95: tuple[float, float]
    level2_ppv: float
    level2_sensitivity: float
    level2_rate_without_pneumothorax: float
    level2_rate_without_pneumothorax_ci95: tuple[float, float]
    level2_rate_no_finding: float
    any_suspected_rate_no_finding: float
    no_finding_images: int
    median_suspected: float
    mean_suspected: float


def agreement(flags: np.ndarray, labels: np.ndarray, patients: np.ndarray, *, rounds: int = 1000,
              seed: int = 0) -> TriageAgreement:
    """The figures of the triage table for one set of suspected flags."""
    truth, image = label_levels(labels), image_levels(flags)
    confusion = [[int(((truth == a) & (image == b)).sum()) for b in LEVELS] for a in LEVELS]
    ptx = labels[:, PNEUMOTHORAX] == 1
    none = labels.sum(1) == 0
    alarm = image <= 2
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    kappas, rates = [], []
    for _ in range(rounds):
        d = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        kappas.append(cohen_kappa_score(truth[d], image[d], weights="quadratic", labels=list(LEVELS)))
        rates.append(alarm[d][~ptx[d]].mean())
    count = flags.sum(1)

    def ci(values: list[float]) -> tuple[float, float]:
        low, high = np.nanpercentile(values, (2.5, 97.5))
        return round(float(low), 4), round(float(high), 4)

    return TriageAgreement(
        images=len(labels), confusion=confusion, agreement=round(float((truth == image).mean()), 4),
        kappa_quadratic=round(float(cohen_kappa_score(truth, image, weights="quadratic",
                                                      labels=list(LEVELS))), 4),
        kappa_ci95=ci(kappas),
        level2_ppv=round(float(ptx[alarm].mean()) if alarm.any() else float("nan"), 4),
        level2_sensitivity=round(float(alarm[ptx].mean()), 4),
        level2_rate_without_pneumothorax=round(float(alarm[~ptx].mean()), 4),
        level2_rate_without_pneumothorax_ci95=ci(rates),
        level2_rate_no_finding=round(float(alarm[none].mean()), 4),
        any_suspected_rate_no_finding=round(float((count[none] > 0).mean()), 4),
        no_finding_images=int(none.sum()), median_suspected=float(np.median(count)),
        mean_suspected=round(float(count.mean()), 3))
