"""Folds, calibration, thresholds and metrics: pure logic on synthetic and real labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra is not installed")

from training.calibrate import fit_calibration, sigmoid, youden_threshold  # noqa: E402
from training.data import load_sample, parse_labels  # noqa: E402
from training.folds import patient_folds  # noqa: E402
from training.metrics import auc_table, expected_calibration_error, mean_auc  # noqa: E402


def _synthetic(n_patients: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images_per = rng.integers(1, 4, n_patients)
    patients = np.repeat(np.arange(n_patients), images_per)
    prevalence = np.linspace(0.03, 0.3, 14)
    labels = (rng.random((len(patients), 14)) < prevalence).astype(np.uint8)
    return patients, labels


def test_no_patient_is_on_both_sides_of_any_fold() -> None:
    patients, labels = _synthetic()
    folds = patient_folds(patients, labels, k=5, seed=3)
    for patient in np.unique(patients):
        assert len(set(folds[patients == patient])) == 1
    assert set(folds) == set(range(5))


def test_folds_balance_every_label() -> None:
    patients, labels = _synthetic(n_patients=600)
    folds = patient_folds(patients, labels, k=5)
    for k in range(14):
        per_fold = np.array([labels[folds == f, k].sum() for f in range(5)])
        expected = labels[:, k].sum() / 5
        assert np.abs(per_fold - expected).max() <= max(3, 0.25 * expected), (k, per_fold)


def test_folds_are_reproducible_by_seed() -> None:
    patients, labels = _synthetic()
    assert (patient_folds(patients, labels, 5, seed=1) == patient_folds(patients, labels, 5, seed=1)).all()
    assert (patient_folds(patients, labels, 5, seed=1) != patient_folds(patients, labels, 5, seed=2)).any()


@pytest.mark.realdata
def test_real_sample_folds_have_no_leak_and_every_finding(data_folder: Path) -> None:
    data = load_sample(data_folder)
    folds = patient_folds(data.patients, data.labels, k=5)
    for fold in range(5):
        inside = set(data.patients[folds == fold])
        outside = set(data.patients[folds != fold])
        assert not inside & outside
        assert (data.labels[folds == fold].sum(0) >= 3).all(), "every finding in every fold"
    teacher_rows = ~np.isnan(data.teacher[:, 0])
    assert teacher_rows.sum() == 665


def test_label_parsing_is_strict() -> None:
    assert parse_labels("No Finding").sum() == 0
    vector = parse_labels("Effusion|Pneumothorax")
    assert vector.sum() == 2 and vector[4] == 1 and vector[13] == 1
    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        parse_labels("Effusion|Broken Leg")


def test_calibration_recovers_a_known_temperature_and_shift() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20000, 1))
    truth = sigmoid(z / 2.5 - 1.0)
    y = (rng.random(z.shape) < truth).astype(int)
    calibration = fit_calibration(z, y)
    assert calibration.temperature[0] == pytest.approx(2.5, rel=0.1)
    assert calibration.bias[0] == pytest.approx(-1.0, abs=0.1)
    before = expected_calibration_error(y, sigmoid(z))
    after = expected_calibration_error(y, calibration.apply(z))
    assert after < before / 3


def test_youden_threshold_separates_a_clean_split() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    threshold = youden_threshold(y, p)
    assert 0.3 < threshold <= 0.6


def test_auc_table_intervals_contain_the_estimate() -> None:
    patients, labels = _synthetic(n_patients=200)
    rng = np.random.default_rng(1)
    scores = labels + rng.normal(0, 0.8, labels.shape)
    rows, mean = auc_table(labels, scores, patients, rounds=200)
    assert mean.low <= mean.auc <= mean.high
    assert 0.7 < mean.auc < 0.95
    assert mean.auc == pytest.approx(mean_auc(labels, scores))
    assert all(r.low <= r.auc <= r.high for r in rows)
