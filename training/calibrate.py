"""Calibration and operating thresholds from out-of-fold predictions.

Per finding, a temperature and a shift (Platt scaling: p = sigmoid(z / T + b))
are fitted by maximum likelihood on the out-of-fold logits. A shift is needed
besides the temperature because the weighted loss pushes every logit up for
rare findings. Thresholds use Youden's J (sensitivity + specificity - 1,
maximised) on the calibrated out-of-fold probabilities.

The probabilities are calibrated to the prevalence of the data they were
fitted on; the NIH sample is richer in findings than the full set or an
ambulance population, so a probability is a ranking aid, not a risk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from sklearn.metrics import roc_curve


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass(frozen=True)
class Calibration:
    """Per-finding temperature, shift and threshold."""

    temperature: list[float]
    bias: list[float]
    thresholds: list[float]
    rule: str = "Youden's J on calibrated out-of-fold probabilities"

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw logits (N, L)."""
        return sigmoid(logits / np.asarray(self.temperature) + np.asarray(self.bias))


def _fit_one(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if y.min() == y.max():
        return 1.0, 0.0

    def nll(params: np.ndarray) -> float:
        log_t, b = params
        logits = z / np.exp(log_t) + b
        return float(np.mean(np.logaddexp(0, logits) - y * logits))

    result = minimize(nll, x0=np.array([0.0, 0.0]), method="L-BFGS-B",
                      bounds=[(np.log(0.05), np.log(20.0)), (-20, 20)])
    return float(np.exp(result.x[0])), float(result.x[1])


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability that maximises sensitivity + specificity - 1."""
    if y.min() == y.max():
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit on out-of-fold logits (N, L) and labels (N, L)."""
    temps, biases, thresholds = [], [], []
    for k in range(labels.shape[1]):
        t, b = _fit_one(logits[:, k].astype(float), labels[:, k].astype(float))
        temps.append(t)
        biases.append(b)
        thresholds.append(youden_threshold(labels[:, k], sigmoid(logits[:, k] / t + b)))
    return Calibration(temps, biases, thresholds)
