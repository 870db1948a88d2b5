"""The diagnosis pipeline's operators: each stage one small object with a typed
input and output (in the manner of MONAI Deploy's operators), composed and
timed by :class:`edge_agent.pipeline.DiagnosisPipeline`::

    XrayFile -> decode -> LoadedImage -> ood (raises when not a chest X-ray)
      -> preprocess -> Prepared -> classify -> Prediction -> postprocess -> Scores
      -> heatmap (LoadedImage, Prediction, Scores) -> Evidence
      -> localise (LoadedImage) -> regions
      -> triage (Scores, Vitals) -> Triage

Every classifier (the shipped models, the placeholder) implements the one
:class:`Classifier` protocol, so the pipeline never asks which one it has.
The pipeline's result is a :class:`DiagnosisResult`; the agent makes it the
``DiagnosisV1`` of a case (:mod:`edge_agent.case_message`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from edge_agent import orientation
from edge_agent.detector import ModelDetector
from edge_agent.guard_model import GuardParameters, shipped_guard
from edge_agent.heatmap import heat_map, overlay_base, overlay_jpeg
from edge_agent.imaging import LoadedImage, XrayFile, decode_image, thumbnail_jpeg
from edge_agent.ood import check_chest_radiograph, statistics_of
from edge_agent.triage import assess
from shared.findings import FINDINGS, Finding
from shared.messages import FindingScore, ImageInfo, ModelInfo, Overlay, Region, Triage, Vitals

O_co = TypeVar("O_co", covariant=True)

MAX_DETECTOR_REGIONS = 32
"""The detector's most confident boxes kept (the message holds at most 64 regions)."""


class Operator(Protocol[O_co]):
    """One stage: its name (the key of its timing) and a call from its typed inputs to its output."""

    name: str

    def __call__(self, *inputs: Any, **named: Any) -> O_co: ...


@dataclass(frozen=True)
class XrayInput:
    """What the pipeline diagnoses: one X-ray file and, when the crew entered
    them, the vital signs that the triage weighs with the findings."""

    file: XrayFile
    vitals: Vitals | None = None

    @classmethod
    def read(cls, path: Path, vitals: Vitals | None = None) -> XrayInput:
        """Read (and hash) ``path`` once.

        Raises:
            InputImageError: the file cannot be read.
        """
        return cls(XrayFile.read(path), vitals)


@dataclass(frozen=True)
class Prediction:
    """One image's calibrated probabilities and class activation maps."""

    probabilities: np.ndarray
    """(14,) in canonical order."""
    cam: np.ndarray | None
    """(14, h, w) raw class activation maps, or None when the model has none."""


class Classifier(Protocol):
    """What the pipeline needs of a classifier."""

    info: ModelInfo

    def thresholds(self) -> dict[Finding, float]:
        """Operating threshold per finding."""

    def reliability(self) -> dict[Finding, tuple[float, float]]:
        """Measured (sensitivity, specificity) at each operating point; empty when unknown."""

    def region_sources(self) -> dict[Finding, str] | None:
        """What draws each finding's regions ("heatmap" or "detector"); None: both."""

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """An 8-bit grey image -> the model's input batch of one."""

    def infer(self, batch: np.ndarray) -> Prediction:
        """The 14 probabilities (and maps, when the model has them) of a pre-processed batch."""


@dataclass(frozen=True)
class Prepared:
    """The image made ready: a thumbnail for the message and the model's input."""

    thumbnail_jpeg: bytes
    batch: np.ndarray


@dataclass(frozen=True)
class Scores:
    """Every finding against its operating point, and the three most probable."""

    findings: list[FindingScore]
    top3: list[Finding]


@dataclass(frozen=True)
class Evidence:
    """Heat-map overlays of the top 3, and the regions they draw."""

    overlays: list[Overlay] | None
    regions: list[Region]


@dataclass(frozen=True)
class DiagnosisResult:
    """What the pipeline found in one X-ray; the agent adds the case's context
    (ambulance, position, patient, time) to make it a ``DiagnosisV1``."""

    image: ImageInfo
    model: ModelInfo
    findings: list[FindingScore]
    top3: list[Finding]
    triage: Triage
    timings_ms: dict[str, float]
    """Milliseconds per stage, by operator name."""
    overlays: list[Overlay] | None = None
    regions: list[Region] = field(default_factory=list)
    vitals: Vitals | None = None


class Decode:
    """XrayFile -> LoadedImage (:func:`edge_agent.imaging.decode_image`)."""

    name = "decode"

    def __call__(self, file: XrayFile) -> LoadedImage:
        return decode_image(file)


class ChestGuard:
    """Refuses what is not a chest radiograph (a photo, a negative, another body
    part, a turned film) instead of diagnosing it, with the guard model's
    parameters (the shipped ``chest-guard`` by default), read and checked when
    the operator is made: a missing or altered guard stops the edge's start,
    not its first diagnosis.

    Raises:
        ModelManifestError: when made, the guard model is missing, altered or
            made for another edge.
        NotChestRadiographError: when called, with the reasons.
    """

    name = "ood"

    def __init__(self, guard: GuardParameters | None = None) -> None:
        self.parameters = guard or shipped_guard()
        self._statistics = statistics_of(self.parameters)
        self._orientation = orientation.parameters_of(self.parameters)

    def __call__(self, image: LoadedImage) -> LoadedImage:
        check_chest_radiograph(image.pixels, source_was_colour=image.source_was_colour,
                               parameters=self._statistics, orientation_parameters=self._orientation
                               ).raise_if_not_ok(image.source)
        return image


class Preprocess:
    """LoadedImage -> Prepared: the thumbnail and the classifier's input."""

    name = "preprocess"

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def __call__(self, image: LoadedImage) -> Prepared:
        return Prepared(thumbnail_jpeg(image.pixels), self.classifier.preprocess(image.pixels))


class Classify:
    """Prepared -> Prediction."""

    name = "classify"

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def __call__(self, prepared: Prepared) -> Prediction:
        return self.classifier.infer(prepared.batch)


class Postprocess:
    """Prediction -> Scores: each probability with its operating point and what
    was measured there."""

    name = "postprocess"

    def __init__(self, classifier: Classifier) -> None:
        self.thresholds = classifier.thresholds()
        self.reliability = classifier.reliability()

    def __call__(self, prediction: Prediction) -> Scores:
        findings = [
            FindingScore(finding=finding, probability=float(p), threshold=self.thresholds[finding],
                         sensitivity=self.reliability.get(finding, (None, None))[0],
                         specificity=self.reliability.get(finding, (None, None))[1])
            for finding, p in zip(FINDINGS, prediction.probabilities, strict=True)
        ]
        order = np.argsort(-prediction.probabilities, kind="stable")[:3]
        return Scores(findings, [FINDINGS[i] for i in order])


class HeatMaps:
    """(LoadedImage, Prediction, Scores) -> Evidence: an overlay for each of the
    top 3, and a region for each of them above its threshold (none without maps)."""

    name = "heatmap"

    def __init__(self, thresholds: dict[Finding, float]) -> None:
        self.thresholds = thresholds

    def __call__(self, image: LoadedImage, prediction: Prediction, scores: Scores) -> Evidence:
        if prediction.cam is None:
            return Evidence(None, [])
        overlays, regions = [], []
        base = overlay_base(image.pixels)
        for finding in scores.top3:
            index = FINDINGS.index(finding)
            heat = heat_map(finding, prediction.cam[index])
            overlays.append(Overlay(finding=finding, jpeg=overlay_jpeg(base, heat),
                                    peak_x=heat.peak_x, peak_y=heat.peak_y))
            probability = float(prediction.probabilities[index])
            if probability >= self.thresholds[finding]:
                x1, y1, x2, y2 = heat.box
                regions.append(Region(finding=finding, x1=x1, y1=y1, x2=x2, y2=y2,
                                      score=probability, source="heatmap"))
        return Evidence(overlays, regions)


class Localise:
    """LoadedImage -> the detector's boxes, most confident first."""

    name = "localise"

    def __init__(self, detector: ModelDetector) -> None:
        self.detector = detector

    def __call__(self, image: LoadedImage) -> list[Region]:
        return self.detector.detect(image.pixels)[:MAX_DETECTOR_REGIONS]


class TriageLevel:
    """(Scores, Vitals) -> Triage: NEWS2 from the crew's vitals with the findings."""

    name = "triage"

    def __init__(self, placeholder: bool) -> None:
        self.placeholder = placeholder

    def __call__(self, scores: Scores, vitals: Vitals | None) -> Triage:
        return assess(scores.findings, vitals, placeholder=self.placeholder)
