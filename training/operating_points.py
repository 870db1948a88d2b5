"""Operating points at a stated specificity, fitted on out-of-fold predictions.

A finding is "suspected" when its calibrated probability reaches its operating
point: the lowest threshold at which at least the target share of images
without the finding stay below it (default specificity 0.90, set per finding).
The shipped threshold is fitted on every out-of-fold prediction; the figures
that describe it are *cross-fitted*: each fold's images are judged against a
threshold fitted on the other folds' predictions only, so no image helps
choose the point it is measured at. Intervals: patient bootstrap.

PPV and NPV depend on prevalence: they are given at the sample's own (which is
rich in findings) and at a reference prevalence (by default the full NIH
ChestX-ray14 label file's, which is still not an ambulance population).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from shared.findings import FINDINGS, NO_FINDING
from shared.manifest import OperatingPoint

DEFAULT_SPECIFICITY = 0.90
FULL_NIH_LABELS = Path("nih-cxr14-labels") / "Data_Entry_2017_v2020.csv.gz"


def threshold_for_specificity(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The lowest threshold t with mean(p[y == 0] < t) >= target."""
    negatives = np.sort(p[y == 0])[::-1]
    if not len(negatives):
        return 1.0
    allowed = int(np.floor((1.0 - target) * len(negatives) + 1e-9))
    if allowed >= len(negatives):
        return float(negatives[-1])
    return float(min(np.nextafter(negatives[allowed], np.inf), 1.0))


def _rates(y: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float, float]:
    tp = float((flagged & (y == 1)).sum())
    fp = float((flagged & (y == 0)).sum())
    fn = float((~flagged & (y == 1)).sum())
    tn = float((~flagged & (y == 0)).sum())
    nan = float("nan")
    return (tp / (tp + fn) if tp + fn else nan, tn / (tn + fp) if tn + fp else nan,
            tp / (tp + fp) if tp + fp else nan, tn / (tn + fn) if tn + fn else nan)


def ppv_npv_at(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """PPV and NPV by Bayes' rule at another prevalence."""
    tp, fp = sensitivity * prevalence, (1 - specificity) * (1 - prevalence)
    tn, fn = specificity * (1 - prevalence), (1 - sensitivity) * prevalence
    return (tp / (tp + fp) if tp + fp else float("nan"), tn / (tn + fn) if tn + fn else float("nan"))


ThresholdRule = Callable[[np.ndarray, np.ndarray, int], float]
"""(labels, probabilities, finding index) -> threshold."""


def cross_fitted_flags(probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                       rule: ThresholdRule) -> np.ndarray:
    """(N, L) suspected flags, each fold judged by thresholds that ``rule`` fitted on the
    other folds' predictions."""
    flags = np.zeros_like(labels, dtype=bool)
    for fold in np.unique(folds):
        held, rest = folds == fold, folds != fold
        for k in range(labels.shape[1]):
            flags[held, k] = probabilities[held, k] >= rule(labels[rest, k], probabilities[rest, k], k)
    return flags


def specificity_rule(targets: np.ndarray) -> ThresholdRule:
    return lambda y, p, k: threshold_for_specificity(y, p, float(targets[k]))


def fit_operating_points(probabilities: np.ndarray, labels: np.ndarray, patients: np.ndarray,
                         folds: np.ndarray, targets: np.ndarray, reference_prevalence: np.ndarray,
                         *, rounds: int = 1000, seed: int = 0) -> list[OperatingPoint]:
    """Per finding: the shipped threshold (all out-of-fold predictions) and its
    cross-fitted sensitivity, specificity, PPV and NPV with patient-bootstrap 95% intervals."""
    flags = cross_fitted_flags(probabilities, labels, folds, specificity_rule(targets))
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    draws = [np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
             for _ in range(rounds)]
    points = []
    for k, finding in enumerate(FINDINGS):
        y, f = labels[:, k], flags[:, k]
        sens, spec, ppv, npv = _rates(y, f)
        boot = np.array([_rates(y[d], f[d]) for d in draws])
        prior = float(reference_prevalence[k])
        ref = np.array([ppv_npv_at(s, c, prior) for s, c in boot[:, :2]])
        ppv_ref, npv_ref = ppv_npv_at(sens, spec, prior)

        def ci(values: np.ndarray) -> tuple[float, float]:
            low, high = np.nanpercentile(values, (2.5, 97.5))
            return round(float(low), 4), round(float(high), 4)

        points.append(OperatingPoint(
            finding=str(finding), target_specificity=float(targets[k]),
            threshold=round(threshold_for_specificity(y, probabilities[:, k], targets[k]), 6),
            positives=int(y.sum()), images=len(y),
            sensitivity=round(sens, 4), sensitivity_ci95=ci(boot[:, 0]),
            specificity=round(spec, 4), specificity_ci95=ci(boot[:, 1]),
            ppv=round(ppv, 4), ppv_ci95=ci(boot[:, 2]), npv=round(npv, 4), npv_ci95=ci(boot[:, 3]),
            reference_prevalence=round(prior, 5),
            ppv_reference=round(ppv_ref, 4), ppv_reference_ci95=ci(ref[:, 0]),
            npv_reference=round(npv_ref, 4), npv_reference_ci95=ci(ref[:, 1])))
    return points


def targets_for(default: float, overrides: Mapping[str, float]) -> np.ndarray:
    """Target specificity per finding: ``default`` unless named in ``overrides``."""
    known = {str(f) for f in FINDINGS}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown finding(s) {sorted(unknown)}; known: {sorted(known)}")
    return np.array([overrides.get(str(f), default) for f in FINDINGS], dtype=float)


def full_nih_prevalence(data_root: Path) -> tuple[np.ndarray, str]:
    """Prevalence of each finding in NIH's full label file, and a description of it."""
    path = data_root / FULL_NIH_LABELS
    counts = np.zeros(len(FINDINGS))
    total = 0
    index = {str(f): k for k, f in enumerate(FINDINGS)}
    with io.TextIOWrapper(gzip.open(path), encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            total += 1
            for name in row["Finding Labels"].split("|"):
                if name != NO_FINDING and name in index:
                    counts[index[name]] += 1
    return counts / max(total, 1), (f"prevalence in NIH ChestX-ray14's full label file ({total:,} images; "
                                    "a hospital population, not an ambulance one)")


def reference_histogram(probabilities: np.ndarray, bins: int = 10) -> dict[str, list]:
    """Counts of out-of-fold probabilities per finding in equal bins: the reference the
    hub's drift check (population stability index) compares field predictions with."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = [np.histogram(probabilities[:, k], bins=edges)[0].astype(int).tolist()
              for k in range(probabilities.shape[1])]
    return {"bins": [round(float(e), 4) for e in edges], "counts": counts}


def as_json(points: list[OperatingPoint]) -> list[dict[str, object]]:
    return [p.model_dump(mode="json") for p in points]
