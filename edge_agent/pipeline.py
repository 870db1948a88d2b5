"""The diagnosis pipeline in explicit stages, each timed: decode -> ood (is it
a chest radiograph?) -> preprocess -> classify -> postprocess -> heatmap ->
triage (NEWS2 from the crew's vitals with the image findings)."""

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

from edge_agent.backends import OpenVinoConfig
from edge_agent.classifier import ModelClassifier, Prediction, load_classifier
from edge_agent.detector import ModelDetector, load_detector
from edge_agent.heatmap import heat_map, overlay_base, overlay_jpeg
from edge_agent.imaging import LoadedImage, load_image, thumbnail_jpeg
from edge_agent.ood import check_chest_radiograph
from edge_agent.placeholder import PlaceholderClassifier
from edge_agent.regions import select_regions
from edge_agent.settings import PLACEHOLDER, EdgeSettings
from edge_agent.triage import assess
from shared.errors import InputImageError
from shared.findings import FINDINGS, Finding
from shared.messages import (
    DiagnosisV1,
    FindingScore,
    ImageInfo,
    ModelInfo,
    Overlay,
    Patient,
    Position,
    Region,
    Triage,
    Vitals,
)

logger = logging.getLogger(__name__)


class Classifier(Protocol):
    """What the pipeline needs of a classifier."""

    info: ModelInfo

    def thresholds(self) -> dict[Finding, float]:
        """Operating threshold per finding."""

    def reliability(self) -> dict[Finding, tuple[float, float]]:
        """Measured (sensitivity, specificity) at each operating point; empty when unknown."""

    def region_sources(self) -> dict[Finding, str] | None:
        """What draws each finding's regions ("heatmap" or "detector"); None: both."""

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """14 probabilities in canonical order for an 8-bit grey image."""


class DiagnosisPipeline:
    """Turns an X-ray file into a :class:`DiagnosisV1` payload."""

    def __init__(self, classifier: Classifier | None = None, detector: ModelDetector | None = None) -> None:
        self.classifier: Classifier = classifier or PlaceholderClassifier()
        self.detector = detector
        self._thresholds = self.classifier.thresholds()
        self._reliability = self.classifier.reliability()
        self._sources = self.classifier.region_sources()

    def run(
        self,
        path: Path,
        *,
        ambulance_id: str,
        position: Position,
        patient: Patient | None = None,
        captured_at: datetime | None = None,
        vitals: Vitals | None = None,
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
        with stage("ood"):
            # Not a chest radiograph (a photo, a negative, another body part): say so
            # instead of diagnosing it.
            check_chest_radiograph(image.pixels, source_was_colour=image.source_was_colour
                                   ).raise_if_not_ok(image.source)
        model = self.classifier if isinstance(self.classifier, ModelClassifier) else None
        with stage("preprocess"):
            thumbnail = thumbnail_jpeg(image.pixels)
            batch = model.preprocess(image.pixels) if model else None
        with stage("classify"):
            if model is not None and batch is not None:
                prediction = model.infer(batch)
            else:
                prediction = Prediction(self.classifier.predict(image.pixels), None)
            probabilities = prediction.probabilities
        with stage("postprocess"):
            scores = [
                FindingScore(finding=finding, probability=float(p), threshold=self._thresholds[finding],
                             sensitivity=self._reliability.get(finding, (None, None))[0],
                             specificity=self._reliability.get(finding, (None, None))[1])
                for finding, p in zip(FINDINGS, probabilities, strict=True)
            ]
            order = np.argsort(-probabilities, kind="stable")[:3]
            top3 = [FINDINGS[i] for i in order]
        with stage("heatmap"):
            overlays, regions = self._heat_maps(image, prediction, top3)
        if self.detector is not None and (self._sources is None or "detector" in self._sources.values()):
            with stage("localise"):
                regions = self.detector.detect(image.pixels)[:32] + regions
        regions = select_regions(regions, self._sources)
        with stage("triage"):
            level = assess(scores, vitals, placeholder=self.classifier.info.placeholder)
        try:
            diagnosis = self._message(image, thumbnail, scores, top3, level, timings,
                                      ambulance_id, position, patient, captured_at,
                                      overlays=overlays, regions=regions, vitals=vitals)
        except ValidationError as exc:
            raise InputImageError(f"{image.source}: cannot describe this image in a "
                                  f"diagnosis message ({exc.errors()[0]['msg']})") from exc
        # File names can carry patient names: logs name the image by its digest.
        logger.info("diagnosed", extra={"image": image.sha256[:12], "triage_level": level.level,
                                        "top3": ",".join(top3),
                                        "ms": round(sum(timings.values()), 1)})
        return diagnosis

    def _heat_maps(self, image: LoadedImage, prediction: Prediction, top3: list[Finding]
                   ) -> tuple[list[Overlay] | None, list[Region]]:
        """Overlays for the top 3; a region for each of them that is above its threshold."""
        if prediction.cam is None:
            return None, []
        overlays, regions = [], []
        base = overlay_base(image.pixels)
        for finding in top3:
            index = FINDINGS.index(finding)
            heat = heat_map(finding, prediction.cam[index])
            overlays.append(Overlay(finding=finding, jpeg=overlay_jpeg(base, heat),
                                    peak_x=heat.peak_x, peak_y=heat.peak_y))
            probability = float(prediction.probabilities[index])
            if probability >= self._thresholds[finding]:
                x1, y1, x2, y2 = heat.box
                regions.append(Region(finding=finding, x1=x1, y1=y1, x2=x2, y2=y2,
                                      score=probability, source="heatmap"))
        return overlays, regions

    def _message(self, image: LoadedImage, thumbnail: bytes, scores: list[FindingScore],
                 top3: list[Finding], level: Triage, timings: dict[str, float],
                 ambulance_id: str, position: Position, patient: Patient | None,
                 captured_at: datetime | None, *, overlays: list[Overlay] | None = None,
                 regions: list[Region] | None = None, vitals: Vitals | None = None) -> DiagnosisV1:
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
            overlays=overlays,
            regions=regions or [],
            vitals=vitals,
        )


def build_pipeline(settings: EdgeSettings) -> DiagnosisPipeline:
    """The pipeline the settings ask for; a missing or altered model is an error
    here, at start-up, not at the first patient.

    Raises:
        ModelManifestError: the model is not in the manifest or fails its check.
    """
    if settings.model == PLACEHOLDER:
        logger.warning("running the PLACEHOLDER classifier: its results mean nothing")
        return DiagnosisPipeline(PlaceholderClassifier())
    classifier = load_classifier(settings.backend, name=settings.model, version=settings.model_version,
                                 models_dir=settings.models_dir)
    detector = None
    if settings.detector:
        # The detector always runs on OpenVINO (its only shipped format); the
        # classifier's backend setting does not apply to it.
        detector = load_detector(OpenVinoConfig(), name=settings.detector, models_dir=settings.models_dir)
        if detector is None:
            logger.warning("no detector %s in the manifest: regions come from heat maps only",
                           settings.detector)
    return DiagnosisPipeline(classifier, detector)
