"""The agent's diagnosis pipeline behind a slot that a model update can swap
between diagnoses, the probation of a new model, and its self-test.

Each diagnosis takes the slot's current pipeline when it starts and finishes on
it; :meth:`PipelineSlot.swap` replaces it for the diagnoses that start
afterwards. While a new pipeline is on probation, a diagnosis that fails for
any reason but a bad image puts the previous pipeline back and is run again on
it (see :mod:`edge_agent.model_update`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_agent.case_message import diagnosis_message
from edge_agent.ood import shipped_parameters
from edge_agent.operators import DiagnosisResult, XrayInput
from edge_agent.pipeline import DiagnosisPipeline
from shared.errors import InputImageError, ModelUpdateError
from shared.findings import FINDINGS
from shared.manifest import ModelEntry
from shared.messages import Position

logger = logging.getLogger(__name__)


@dataclass
class Probation:
    """A new pipeline on trial: the one to go back to and what to do at the end."""

    previous: DiagnosisPipeline
    remaining: int
    on_pass: Callable[[], None]
    on_fail: Callable[[str], None]


class PipelineSlot:
    """Holds the pipeline that the agent diagnoses with.

    Each diagnosis takes the current pipeline when it starts and finishes on it;
    :meth:`swap` replaces it for the diagnoses that start afterwards.
    """

    def __init__(self, pipeline: DiagnosisPipeline) -> None:
        self._pipeline = pipeline
        self._probation: Probation | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> DiagnosisPipeline:
        """The pipeline the next diagnosis starts on."""
        return self._pipeline

    @property
    def on_probation(self) -> bool:
        """Whether the current pipeline is a new model still on trial."""
        return self._probation is not None

    def swap(self, pipeline: DiagnosisPipeline, probation: Probation | None = None) -> DiagnosisPipeline:
        """Make ``pipeline`` current (on trial when ``probation`` is given); returns the previous one."""
        with self._lock:
            previous = self._pipeline
            self._pipeline = pipeline
            self._probation = probation if probation is not None and probation.remaining > 0 else None
        logger.info("diagnosis pipeline swapped", extra={
            "model": f"{pipeline.classifier.info.name}@{pipeline.classifier.info.version}",
            "previous": f"{previous.classifier.info.name}@{previous.classifier.info.version}"})
        if probation is not None and probation.remaining <= 0:
            _callback(probation.on_pass)
        return previous

    def run(self, xray: XrayInput) -> DiagnosisResult:
        """Diagnose ``xray`` on the current pipeline (see :meth:`DiagnosisPipeline.run`).

        Raises:
            InputImageError: the image cannot be used.
        """
        with self._lock:
            pipeline, probation = self._pipeline, self._probation
        if probation is None:
            return pipeline.run(xray)
        try:
            diagnosis = pipeline.run(xray)
            problem = result_problem(diagnosis)
        except InputImageError:
            raise  # the image's fault, not the model's
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            self._succeeded(probation)
            return diagnosis
        if self._failed(probation, problem):
            logger.warning("diagnosing the image again on the previous model")
        return self.run(xray)

    def _succeeded(self, probation: Probation) -> None:
        with self._lock:
            if self._probation is not probation:
                return
            probation.remaining -= 1
            done = probation.remaining <= 0
            if done:
                self._probation = None
        if done:
            _callback(probation.on_pass)

    def _failed(self, probation: Probation, problem: str) -> bool:
        with self._lock:
            if self._probation is not probation:
                return False
            self._pipeline, self._probation = probation.previous, None
        logger.error("the new model failed on a real diagnosis: rolled back", extra={"error": problem})
        _callback(probation.on_fail, problem)
        return True


def _callback(function: Callable[..., None], *args: Any) -> None:
    try:
        function(*args)
    except Exception:  # bookkeeping must never break a diagnosis
        logger.exception("model update bookkeeping failed")


def result_problem(diagnosis: DiagnosisResult) -> str | None:
    """What is wrong with a model's result, or None: the 14 findings in
    canonical order, each with a finite probability in [0, 1]."""
    findings = [score.finding for score in diagnosis.findings]
    if findings != list(FINDINGS):
        return f"findings {findings} are not the 14 canonical labels in order"
    bad = [s.finding for s in diagnosis.findings
           if not (math.isfinite(s.probability) and 0 <= s.probability <= 1)]
    return f"probabilities out of range for {', '.join(bad)}" if bad else None


def chest_like(size: int = 512, seed: int = 0, grain: float = 4.0) -> np.ndarray:
    """An 8-bit grey (size, size) array shaped like a frontal chest radiograph: the
    chest guard's own average chest X-ray, enlarged, with grain."""
    template = np.asarray(shipped_parameters().template, np.float32)
    scaled = ((template - template.min()) / max(float(np.ptp(template)), 1e-6) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(scaled).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    noise = np.random.default_rng(seed).normal(0, grain, big.shape)
    return np.clip(big * 0.85 + 20 + noise, 0, 255).astype(np.uint8)


def self_test_image(path: Path, size: int = 512) -> Path:
    """Write :func:`chest_like` to ``path`` (the self-test image of a new model)."""
    Image.fromarray(chest_like(size)).save(path)
    return path


def self_test(pipeline: DiagnosisPipeline, entries: list[ModelEntry], image: Path, ambulance_id: str
              ) -> DiagnosisResult:
    """Diagnose the self-test image, as a case's message, and check the result against the release.

    Raises:
        ModelUpdateError: the pipeline fails, or reports another model, or a bad result.
    """
    try:
        diagnosis = pipeline.run(XrayInput.read(image))
        diagnosis_message(diagnosis, ambulance_id=ambulance_id, position=Position(lat=0, lon=0))
    except Exception as exc:  # any failure of a new model is a failed self-test
        raise ModelUpdateError(f"self-test failed: {type(exc).__name__}: {exc}") from exc
    for entry in entries:
        if entry.task != "classifier":
            continue
        info = diagnosis.model
        if (info.name, info.version) != (entry.name, entry.version) or info.sha256 not in {
                f.sha256 for f in entry.files}:
            raise ModelUpdateError(f"self-test: the result names {info.name}@{info.version}, not {entry.key}")
    problem = result_problem(diagnosis)
    if problem is not None:
        raise ModelUpdateError(f"self-test: {problem}")
    return diagnosis
