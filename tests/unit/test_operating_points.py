"""Operating points at a stated specificity, cross-fitting, and the triage agreement figures."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.findings import FINDINGS, Finding
from training.operating_points import (
    cross_fitted_flags,
    fit_operating_points,
    ppv_npv_at,
    specificity_rule,
    targets_for,
    threshold_for_specificity,
)
from training.triage_eval import agreement, label_levels


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.floats(0, 1, exclude_max=True), min_size=4, max_size=200),
       target=st.floats(0.5, 0.99), seed=st.integers(0, 2**16))
def test_threshold_is_the_lowest_that_keeps_the_target_specificity(scores: list[float], target: float,
                                                                  seed: int) -> None:
    p = np.array(scores)
    y = np.random.default_rng(seed).integers(0, 2, len(p))
    negatives = p[y == 0]
    if not len(negatives):
        return
    t = threshold_for_specificity(y, p, target)
    assert (negatives < t).mean() >= target - 1e-9
    below = negatives[negatives < t]
    if len(below):  # the next lower candidate, the highest negative under t, would miss the target
        assert (negatives < below.max()).mean() < target - 1e-9


def test_ppv_and_npv_follow_prevalence() -> None:
    ppv, npv = ppv_npv_at(0.8, 0.9, 0.5)
    assert ppv == pytest.approx(0.8 / 0.9) and npv == pytest.approx(0.9 / 1.1)
    rare_ppv, rare_npv = ppv_npv_at(0.8, 0.9, 0.01)
    assert rare_ppv < 0.1 < 0.99 < rare_npv


def test_targets_per_finding_and_unknown_names() -> None:
    targets = targets_for(0.9, {"Pneumothorax": 0.95})
    assert targets[FINDINGS.index(Finding.PNEUMOTHORAX)] == 0.95 and targets[0] == 0.9
    with pytest.raises(ValueError, match="unknown finding"):
        targets_for(0.9, {"Pneumothorax ": 0.95})


def _synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(FINDINGS))) < 0.2).astype(int)
    probabilities = np.clip(0.3 * labels + rng.random(labels.shape) * 0.7, 0, 1)
    patients = np.arange(n) // 2
    folds = patients % 5
    return probabilities, labels, patients, folds


def test_cross_fitted_flags_never_use_the_fold_they_judge() -> None:
    probabilities, labels, _, folds = _synthetic()
    targets = np.full(14, 0.9)
    scrambled = probabilities.copy()
    scrambled[folds == 0] = 1 - scrambled[folds == 0]
    flags = cross_fitted_flags(scrambled, labels, folds, specificity_rule(targets))
    held, rest = folds == 0, folds != 0
    for k in range(14):
        # fold 0 is judged by thresholds fitted on folds 1-4 alone, whatever its own scores
        t = threshold_for_specificity(labels[rest, k], probabilities[rest, k], 0.9)
        assert np.array_equal(flags[held, k], scrambled[held, k] >= t)


def test_fit_reports_the_measured_rates_with_intervals() -> None:
    probabilities, labels, patients, folds = _synthetic()
    points = fit_operating_points(probabilities, labels, patients, folds, np.full(14, 0.9),
                                  np.full(14, 0.05), rounds=100)
    assert [p.finding for p in points] == [str(f) for f in FINDINGS]
    for p in points:
        assert 0.8 <= p.specificity <= 1.0
        assert p.specificity_ci95[0] <= p.specificity <= p.specificity_ci95[1]
        assert p.sensitivity_ci95[0] <= p.sensitivity <= p.sensitivity_ci95[1]
        assert p.ppv_reference < p.ppv  # 5% prevalence is below the sample's ~20%
        assert p.positives == int(labels[:, FINDINGS.index(Finding(p.finding))].sum())


def test_label_levels_follow_the_rule_table() -> None:
    rows = np.zeros((4, 14), int)
    rows[0, FINDINGS.index(Finding.PNEUMOTHORAX)] = 1
    rows[1, FINDINGS.index(Finding.EFFUSION)] = 1
    rows[2, FINDINGS.index(Finding.NODULE)] = 1
    assert label_levels(rows).tolist() == [2, 3, 4, 5]


def test_perfect_flags_agree_perfectly() -> None:
    _, labels, patients, _ = _synthetic()
    result = agreement(labels.astype(bool), labels, patients, rounds=50)
    assert result.agreement == 1.0 and result.kappa_quadratic == pytest.approx(1.0)
    assert result.level2_rate_without_pneumothorax == 0.0 and result.level2_sensitivity == 1.0
