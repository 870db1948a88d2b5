"""Patient-wise multilabel stratified folds.

Stratification runs over patients, not images: a patient's label vector is the
union of their images' labels, :class:`MultilabelStratifiedKFold`
(iterative-stratification) balances those vectors across folds, and every
image follows its patient. One patient never lands on both sides of a split.
"""

from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from shared.errors import ConfigurationError


def patient_folds(patients: np.ndarray, labels: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) for every image.

    Args:
        patients: (n,) patient id per image.
        labels: (n, L) multi-hot labels per image.
    """
    if k < 2:
        raise ConfigurationError("need at least 2 folds")
    unique, inverse = np.unique(patients, return_inverse=True)
    if len(unique) < k:
        raise ConfigurationError(f"{len(unique)} patients cannot make {k} folds")
    per_patient = np.zeros((len(unique), labels.shape[1]), dtype=np.uint8)
    np.maximum.at(per_patient, inverse, labels.astype(np.uint8))
    # A column for "no finding" keeps normal patients spread evenly too.
    strata = np.concatenate([per_patient, (per_patient.sum(1) == 0)[:, None]], axis=1)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    patient_fold = np.empty(len(unique), dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(unique)), strata)):
        patient_fold[test] = fold
    return patient_fold[inverse]

