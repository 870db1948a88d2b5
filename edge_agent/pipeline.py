"""The diagnosis pipeline: the operators of :mod:`edge_agent.operators`, each
timed, from an X-ray file to a :class:`DiagnosisResult`: decode -> ood (is it a
chest radiograph?) -> preprocess -> classify -> postprocess -> heatmap ->
localise -> triage (NEWS2 from the crew's vitals with the image findings)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import ValidationError

from edge_agent.backends import OpenVinoConfig
from edge_agent.classifier import load_classifier
from edge_agent.detector import ModelDetector, load_detector
from edge_agent.guard_model import GuardParameters, edge_guard
from edge_agent.operators import (
    ChestGuard,
    Classifier,
    Classify,
    Decode,
    DiagnosisResult,
    HeatMaps,
    Localise,
    Operator,
    Postprocess,
    Preprocess,
    TriageLevel,
    XrayInput,
)
from edge_agent.placeholder import PlaceholderClassifier
from edge_agent.regions import select_regions
from edge_agent.settings import PLACEHOLDER, EdgeSettings
from shared.errors import InputImageError
from shared.messages import ImageInfo

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DiagnosisPipeline:
    """Turns an :class:`XrayInput` into a :class:`DiagnosisResult`, timing each operator."""

    def __init__(self, classifier: Classifier | None = None, detector: ModelDetector | None = None,
                 guard: GuardParameters | None = None) -> None:
        """``guard``: the chest guard's parameters (the shipped guard's by default),
        read and checked here.

        Raises:
            ModelManifestError: the guard model is missing, altered or made for another edge.
        """
        self.classifier: Classifier = classifier or PlaceholderClassifier()
        self.detector = detector
        self._sources = self.classifier.region_sources()
        self.decode = Decode()
        self.guard = ChestGuard(guard)
        self.preprocess = Preprocess(self.classifier)
        self.classify = Classify(self.classifier)
        self.postprocess = Postprocess(self.classifier)
        self.heat_maps = HeatMaps(self.postprocess.thresholds)
        wanted = self._sources is None or "detector" in self._sources.values()
        self.localise = Localise(detector) if detector is not None and wanted else None
        """None: no detector, or no finding takes its regions from it."""
        self.triage = TriageLevel(self.classifier.info.placeholder)

    def run(self, xray: XrayInput) -> DiagnosisResult:
        """Diagnose one X-ray.

        Raises:
            InputImageError: the file cannot be used.
        """
        timings: dict[str, float] = {}

        def timed(operator: Operator[T], *inputs: Any) -> T:
            start = time.perf_counter()
            output = operator(*inputs)
            timings[operator.name] = round((time.perf_counter() - start) * 1000, 3)
            return output

        image = timed(self.decode, xray.file)
        timed(self.guard, image)
        prepared = timed(self.preprocess, image)
        prediction = timed(self.classify, prepared)
        scores = timed(self.postprocess, prediction)
        evidence = timed(self.heat_maps, image, prediction, scores)
        regions = evidence.regions
        if self.localise is not None:
            regions = timed(self.localise, image) + regions
        regions = select_regions(regions, self._sources)
        level = timed(self.triage, scores, xray.vitals)
        with described(image.source):
            result = DiagnosisResult(
                image=ImageInfo(source=image.source, format=image.format, width=image.width,
                                height=image.height, sha256=image.sha256,
                                thumbnail_jpeg=prepared.thumbnail_jpeg),
                model=self.classifier.info, findings=scores.findings, top3=scores.top3,
                triage=level, timings_ms=timings, overlays=evidence.overlays, regions=regions,
                vitals=xray.vitals)
        # File names can carry patient names: logs name the image by its digest.
        logger.info("diagnosed", extra={"image": image.sha256[:12], "triage_level": level.level,
                                        "top3": ",".join(scores.top3),
                                        "ms": round(sum(timings.values()), 1)})
        return result


@contextmanager
def described(source: str) -> Iterator[None]:
    """Turn a message model's refusal to describe an image into the image's error.

    Raises:
        InputImageError: a field of the image does not fit the message.
    """
    try:
        yield
    except ValidationError as exc:
        raise InputImageError(f"{source}: cannot describe this image in a "
                              f"diagnosis message ({exc.errors()[0]['msg']})") from exc


def build_pipeline(settings: EdgeSettings) -> DiagnosisPipeline:
    """The pipeline the settings ask for; a missing or altered model is an error
    here, at start-up, not at the first patient.

    Raises:
        ModelManifestError: the model or the chest guard is not in the manifest
            or fails its check.
    """
    guard = edge_guard(settings.guard_models_dir)
    if settings.model == PLACEHOLDER:
        logger.warning("running the PLACEHOLDER classifier: its results mean nothing")
        return DiagnosisPipeline(PlaceholderClassifier(), guard=guard)
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
    return DiagnosisPipeline(classifier, detector, guard)
