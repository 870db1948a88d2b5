"""Edge -> hub: the AI result of one chest X-ray (:class:`DiagnosisV1`, with
what it is made of: scores, regions, heat maps, triage, the model, the image,
the patient and the vitals) and the full image that follows it in chunks
(:class:`ImageChunkV1`)."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from shared.findings import FINDINGS, Finding
from shared.ids import Identifier
from shared.messages.base import Payload, Position, Probability, WireModel

CHUNK_BYTES = 256 * 1024
"""Largest image chunk: well under a 1 MB broker packet limit with its envelope."""


class FindingScore(WireModel):
    """One finding's probability against the model's operating point.

    The threshold is chosen for a stated specificity on out-of-fold predictions
    (``models/manifest.json``); ``sensitivity`` and ``specificity`` are what that
    point measured there, so every "suspected" says how far it can be trusted.
    """

    finding: Finding
    probability: Probability = Field(ge=0, le=1)
    threshold: Probability = Field(ge=0, le=1)
    sensitivity: Probability | None = Field(default=None, ge=0, le=1)
    """Measured sensitivity at ``threshold`` (None from models without operating points)."""
    specificity: Probability | None = Field(default=None, ge=0, le=1)
    """Measured specificity at ``threshold``."""

    @property
    def suspected(self) -> bool:
        """Whether the probability reaches the operating point: the finding is suspected."""
        return self.probability >= self.threshold

    @property
    def positive(self) -> bool:
        """Former name of :attr:`suspected`."""
        return self.suspected


class Region(WireModel):
    """A suspicious region, in coordinates normalised to the image (0..1)."""

    finding: Finding
    x1: float = Field(ge=0, le=1)
    y1: float = Field(ge=0, le=1)
    x2: float = Field(ge=0, le=1)
    y2: float = Field(ge=0, le=1)
    score: Probability = Field(ge=0, le=1)
    source: Literal["heatmap", "detector"] | None = None
    """What drew the box: the classifier's class activation map or the detector."""

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError("region needs x1 < x2 and y1 < y2")
        return self


class Overlay(WireModel):
    """A finding's class activation heat map blended over the image (small JPEG)."""

    finding: Finding
    jpeg: bytes = Field(max_length=24 * 1024)
    peak_x: float = Field(ge=0, le=1)
    peak_y: float = Field(ge=0, le=1)


class Triage(WireModel):
    """Severity level, 1 (immediate) to 5 (non-urgent), with its reasons."""

    level: int = Field(ge=1, le=5)
    label: str = Field(max_length=200)
    reasons: list[str] = Field(default_factory=list, max_length=20)


class ModelInfo(WireModel):
    """Which model produced a result; ``placeholder`` marks a non-model stand-in."""

    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    placeholder: bool = False


class ImageInfo(WireModel):
    """The source image: where it came from, its size, digest and a thumbnail."""

    source: str = Field(max_length=256)
    format: Literal["dicom", "png", "jpeg"]
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    thumbnail_jpeg: bytes = Field(default=b"", max_length=48 * 1024)


class Patient(WireModel):
    """What the crew knows of the patient; every field optional, never
    required to start a case (``name`` None means unknown)."""

    age_years: int | None = Field(default=None, ge=0, le=130)
    """Estimated age."""
    sex: Literal["F", "M", "X"] | None = None
    name: str | None = Field(default=None, max_length=128)
    chief_complaint: str | None = Field(default=None, max_length=300)


class Vitals(WireModel):
    """One set of vital signs taken by the crew (the NEWS2 parameters)."""

    taken_at: AwareDatetime
    spo2_pct: int | None = Field(default=None, ge=40, le=100)
    resp_rate: int | None = Field(default=None, ge=0, le=80)
    heart_rate: int | None = Field(default=None, ge=0, le=300)
    systolic_bp: int | None = Field(default=None, ge=0, le=300)
    temperature_c: float | None = Field(default=None, ge=25, le=45)
    avpu: Literal["A", "C", "V", "P", "U"] | None = None
    """Alert, new Confusion, Voice, Pain, Unresponsive."""
    supplemental_o2: bool | None = None


class DiagnosisV1(Payload):
    """Edge -> hub: the AI result for one chest X-ray of a case."""

    SCHEMA: ClassVar[str] = "diagnosis"
    VERSION: ClassVar[int] = 1
    MAX_BYTES: ClassVar[int] = 160 * 1024

    ambulance_id: Identifier
    captured_at: AwareDatetime
    position: Position
    image: ImageInfo
    model: ModelInfo
    findings: list[FindingScore]
    top3: list[Finding] = Field(max_length=3)
    regions: list[Region] = Field(default_factory=list, max_length=64)
    overlays: list[Overlay] | None = Field(default=None, max_length=3)
    """Heat maps of the top findings (None from models without them)."""
    triage: Triage
    timings_ms: dict[str, float] = Field(default_factory=dict)
    patient: Patient | None = None
    vitals: Vitals | None = None

    @model_validator(mode="after")
    def _all_findings_in_order(self) -> DiagnosisV1:
        order = tuple(score.finding for score in self.findings)
        if order != FINDINGS:
            raise ValueError("findings must list all 14 findings in canonical order")
        return self


class ImageChunkV1(Payload):
    """Ambulance -> hub: one chunk of a case's full-resolution image.

    The diagnosis (with its thumbnail) goes first; the image follows in chunks
    of at most 256 KiB, each with its own digest, so that it passes brokers
    whose packets are limited to 1 MB and resumes chunk by chunk after a
    disconnect. The hub reassembles the image and checks ``image_sha256``.
    """

    SCHEMA: ClassVar[str] = "image_chunk"
    VERSION: ClassVar[int] = 1
    MAX_BYTES: ClassVar[int] = 300 * 1024

    ambulance_id: Identifier
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: Literal["application/dicom", "image/png", "image/jpeg"]
    total_bytes: int = Field(gt=0, le=64 * 1024 * 1024)
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=256)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data: bytes = Field(min_length=1, max_length=CHUNK_BYTES)

    @model_validator(mode="after")
    def _consistent(self) -> ImageChunkV1:
        if self.index >= self.count:
            raise ValueError("chunk index must be below the chunk count")
        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            raise ValueError("chunk data does not match its sha256")
        return self
