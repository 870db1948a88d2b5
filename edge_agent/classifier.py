"""The trained classifier on the edge: pre-process, predict, post-process.

Pre-processing follows the manifest's input contract exactly as training did
(whole image resized to the square input with PIL's bilinear filter, then
``(pixel - mean) / std``). Post-processing is numpy: per-finding temperature
and shift, the shipped thresholds, and the class activation maps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent.backends import Backend, BackendConfig, OpenVinoConfig, create_backend
from edge_agent.operators import Prediction
from shared.findings import FINDINGS, Finding
from shared.manifest import DEFAULT_MODELS_DIR, ModelEntry, ModelManifestError, load_manifest
from shared.messages import ModelInfo

logger = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = "chest-effnetlite0"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class ModelClassifier:
    """A manifest classifier run by one backend (a :class:`edge_agent.operators.Classifier`)."""

    def __init__(self, entry: ModelEntry, backend: Backend) -> None:
        if entry.task != "classifier":
            raise ModelManifestError(f"{entry.key} is a {entry.task}, not a classifier")
        self.entry = entry
        self.backend = backend
        self.info = ModelInfo(name=entry.name, version=entry.version, sha256=backend.sha256,
                              placeholder=False)
        n = len(FINDINGS)
        self._temperature = np.asarray(entry.temperature or [1.0] * n, dtype=np.float32)
        self._bias = np.asarray(entry.bias or [0.0] * n, dtype=np.float32)
        self._thresholds = dict(zip(FINDINGS, entry.thresholds or [0.5] * n, strict=True))

    def thresholds(self) -> dict[Finding, float]:
        """The shipped operating threshold per finding."""
        return dict(self._thresholds)

    def region_sources(self) -> dict[Finding, str] | None:
        """What draws each finding's regions (heat map or detector), when the manifest says."""
        sources = self.entry.region_sources
        return None if sources is None else {Finding(k): v for k, v in sources.items()}

    def reliability(self) -> dict[Finding, tuple[float, float]]:
        """Measured (sensitivity, specificity) at each operating point, where the manifest has them."""
        return {Finding(p.finding): (p.sensitivity, p.specificity) for p in self.entry.operating_points or []}

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """8-bit grey (H, W) -> (1, 1, S, S) float32 under the input contract."""
        size = self.entry.input.size
        resized = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
        array = (np.asarray(resized, dtype=np.float32) - self.entry.input.mean) / self.entry.input.std
        return array[None, None]

    def infer(self, batch: np.ndarray) -> Prediction:
        """Run the model on a pre-processed batch of one."""
        outputs = self.backend.infer(batch)
        logits = outputs["logits"][0].astype(np.float32)
        probabilities = _sigmoid(logits / self._temperature + self._bias)
        cam = outputs.get("cam")
        return Prediction(probabilities, None if cam is None else cam[0])

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """14 calibrated probabilities for an 8-bit grey image."""
        return self.infer(self.preprocess(pixels)).probabilities


def load_classifier(backend: BackendConfig | None = None, *, name: str = DEFAULT_CLASSIFIER,
                    version: str | None = None, models_dir: Path = DEFAULT_MODELS_DIR) -> ModelClassifier:
    """The named classifier from the manifest, its files verified.

    Raises:
        ModelManifestError: no manifest, no such model, or a file that fails its check.
        ConfigurationError: the backend's runtime is missing.
    """
    entry = load_manifest(models_dir).find(name, version)
    return ModelClassifier(entry, create_backend(entry, models_dir, backend or OpenVinoConfig()))
