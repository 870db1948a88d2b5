"""The diagnosis pipeline in explicit stages: decode -> preprocess -> classify
-> postprocess -> triage, each timed."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import ValidationError

from edge_agent.imaging import LoadedImage, load_image, thumbnail_jpeg
from edge_agent.placeholder import PlaceholderClassifier
from edge_agent.triage import triage
from shared.errors import InputImageError
from shared.findings import FINDINGS, Finding
from shared.messages import (
    DiagnosisV1,
    FindingScore,
    ImageInfo,
    ModelInfo,
    Patient,
    Position,
    Triage,
)

logger = logging.getLogger(__name__)


class Classifier(Protocol):
    """What the pipeline needs of a classifier."""

    info: ModelInfo

    def thresholds(self) -> dict[Finding, float]:
        """Operating threshold per finding."""

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """14 probabilities in canonical order for an 8-bit grey image."""


class DiagnosisPipeline:
    """Turns an X-ray file into a :class:`DiagnosisV1` payload."""

    def __init__(self, classifier: Classifier | None = None) -> None:
        self.classifier: Classifier = classifier or PlaceholderClassifier()
        self._thresholds = self.classifier.thresholds()

    def run(
        self,
        path: Path,
        *,
        ambulance_id: str,
        position: Position,
        patient: Patient | None = None,
        captured_at: datetime | None = None,
    ) -> DiagnosisV1:
        """Diagnose one image.

        Raises:
            InputImageError: the file cannot be used.
        """
        timings: dict[str, float] = {}

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            start = time.perf_counter()
            yield
            timings[name] = round((time.perf_counter() - start) * 1000, 3)

        with stage("decode"):
            image = load_image(path)
        with stage("preprocess"):
            thumbnail = thumbnail_jpeg(image.pixels)
        with stage("classify"):
            probabilities = self.classifier.predict(image.pixels)
        with stage("postprocess"):
            scores = [
                FindingScore(finding=finding, probability=float(p),
                             threshold=self._thresholds[finding])
                for finding, p in zip(FINDINGS, probabilities, strict=True)
            ]
            order = np.argsort(-probabilities, kind="stable")[:3]
            top3 = [FINDINGS[i] for i in order]
        with stage("triage"):
            level = triage(scores, placeholder=self.classifier.info.placeholder)
        try:
            diagnosis = self._message(image, thumbnail, scores, top3, level, timings,
                                      ambulance_id, position, patient, captured_at)
        except ValidationError as exc:
            raise InputImageError(f"{image.source}: cannot describe this image in a "
                                  f"diagnosis message ({exc.errors()[0]['msg']})") from exc
        # File names can carry patient names: logs name the image by its digest.
        logger.info("diagnosed", extra={"image": image.sha256[:12], "triage_level": level.level,
                                        "top3": ",".join(top3),
                                        "ms": round(sum(timings.values()), 1)})
        return diagnosis

    def _message(self, image: LoadedImage, thumbnail: bytes, scores: list[FindingScore],
                 top3: list[Finding], level: Triage, timings: dict[str, float],
                 ambulance_id: str, position: Position, patient: Patient | None,
                 captured_at: datetime | None) -> DiagnosisV1:
        return DiagnosisV1(
            ambulance_id=ambulance_id,
            captured_at=captured_at or datetime.now(UTC),
            position=position,
            image=ImageInfo(source=image.source, format=image.format, width=image.width,
                            height=image.height, sha256=image.sha256, thumbnail_jpeg=thumbnail),
            model=self.classifier.info,
            findings=scores,
            top3=top3,
            triage=level,
            timings_ms=timings,
            patient=patient,
        )
