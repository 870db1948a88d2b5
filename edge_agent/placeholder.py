"""A PLACEHOLDER classifier: it is not a model and diagnoses nothing.

It exists so that the walking skeleton can carry realistic messages end to
end before the trained models land. Its scores are a fixed function of coarse
image statistics (so different images give different numbers, and the same
image the same numbers); they carry no clinical meaning. Every message it
produces says ``placeholder: true`` and every screen shows that.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edge_agent.operators import Prediction
from shared.findings import FINDINGS, Finding
from shared.messages import ModelInfo

PLACEHOLDER_MODEL = ModelInfo(name="placeholder-not-a-model", version="0", placeholder=True)
PLACEHOLDER_THRESHOLD = 0.5


class PlaceholderClassifier:
    """Maps an 8-bit grey image to 14 scores in [0, 1] without any learning (a
    :class:`edge_agent.operators.Classifier` like the real ones)."""

    info = PLACEHOLDER_MODEL

    def __init__(self) -> None:
        # Fixed projection from 4x4 regional means to one score per finding.
        rng = np.random.default_rng(20261125)
        self._weights = rng.normal(0.0, 3.0, size=(len(FINDINGS), 16)).astype(np.float32)

    def thresholds(self) -> dict[Finding, float]:
        """The same 0.5 for every finding: there is nothing to calibrate."""
        return {finding: PLACEHOLDER_THRESHOLD for finding in FINDINGS}

    def region_sources(self) -> dict[Finding, str] | None:
        """No measurement: both sources' regions are shown."""
        return None

    def reliability(self) -> dict[Finding, tuple[float, float]]:
        """None measured: a placeholder has no sensitivity or specificity to state."""
        return {}

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """The 4x4 regional means of an 8-bit grey image, in [0, 1]."""
        return np.asarray(Image.fromarray(pixels).resize((4, 4), Image.Resampling.BOX),
                          dtype=np.float32) / 255.0

    def infer(self, batch: np.ndarray) -> Prediction:
        """14 scores in canonical finding order, and no maps."""
        features = batch.reshape(-1) - batch.mean()
        logits = self._weights @ features - 1.0
        return Prediction((1.0 / (1.0 + np.exp(-logits))).astype(np.float32), None)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Return 14 scores in canonical finding order."""
        return self.infer(self.preprocess(pixels)).probabilities
