"""Payload models of the message contract, one class per (schema, version).

Field names are the wire names; fields that are None are left off the wire.
Readers ignore payload fields they do not know
(tolerant reader), so a field may be added, with a default, within a version;
any other change (rename, removal, new meaning, new type) is a new version
registered beside the old one.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.findings import FINDINGS, Finding
from shared.ids import Identifier

Probability = float
CHUNK_BYTES = 256 * 1024
"""Largest image chunk: well under a 1 MB broker packet limit with its envelope."""


class _Model(BaseModel):
    # bytes (thumbnails, heat maps) go to JSON as base64, never as raw UTF-8
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False,
                              ser_json_bytes="base64", val_json_bytes="base64")


class Payload(_Model):
    """Base of every payload; subclasses set the schema name and version."""

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    MAX_BYTES: ClassVar[int] = 64 * 1024
    """Largest encoded envelope accepted for this payload."""


class Position(_Model):
    """A WGS-84 position."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class FindingScore(_Model):
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


class Region(_Model):
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


class Overlay(_Model):
    """A finding's class activation heat map blended over the image (small JPEG)."""

    finding: Finding
    jpeg: bytes = Field(max_length=24 * 1024)
    peak_x: float = Field(ge=0, le=1)
    peak_y: float = Field(ge=0, le=1)


class Triage(_Model):
    """Severity level, 1 (immediate) to 5 (non-urgent), with its reasons."""

    level: int = Field(ge=1, le=5)
    label: str = Field(max_length=200)
    reasons: list[str] = Field(default_factory=list, max_length=20)


class ModelInfo(_Model):
    """Which model produced a result; ``placeholder`` marks a non-model stand-in."""

    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    placeholder: bool = False


class ImageInfo(_Model):
    """The source image: where it came from, its size, digest and a thumbnail."""

    source: str = Field(max_length=256)
    format: Literal["dicom", "png", "jpeg"]
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    thumbnail_jpeg: bytes = Field(default=b"", max_length=48 * 1024)


class Patient(_Model):
    """What the crew knows of the patient; every field optional, never
    required to start a case (``name`` None means unknown)."""

    age_years: int | None = Field(default=None, ge=0, le=130)
    """Estimated age."""
    sex: Literal["F", "M", "X"] | None = None
    name: str | None = Field(default=None, max_length=128)
    chief_complaint: str | None = Field(default=None, max_length=300)


class Vitals(_Model):
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


class OfferV1(Payload):
    """Hub -> ER: a case offered to one hospital, or that offer withdrawn."""

    SCHEMA: ClassVar[str] = "offer"
    VERSION: ClassVar[int] = 1

    hospital_id: Identifier
    ambulance_id: Identifier
    state: Literal["open", "withdrawn"]
    rank: int = Field(ge=1, le=10_000)
    distance_km: float = Field(ge=0)
    eta_min: float = Field(ge=0)
    expires_at: AwareDatetime
    triage_level: int = Field(ge=1, le=5)
    top3: list[Finding] = Field(max_length=3)
    summary: str = Field(max_length=500)


class ErDecisionV1(Payload):
    """ER -> hub: accept or decline an offer."""

    SCHEMA: ClassVar[str] = "er_decision"
    VERSION: ClassVar[int] = 1

    hospital_id: Identifier
    decision: Literal["accept", "decline"]
    reason: str | None = Field(default=None, max_length=500)
    decided_by: str = Field(max_length=128)

    @model_validator(mode="after")
    def _decline_has_reason(self) -> ErDecisionV1:
        if self.decision == "decline" and not (self.reason and self.reason.strip()):
            raise ValueError("a decline needs a reason")
        return self


class CaseDecisionV1(Payload):
    """Hub -> ambulance: where to go, or that no ER has accepted."""

    SCHEMA: ClassVar[str] = "case_decision"
    VERSION: ClassVar[int] = 1

    status: Literal["accepted", "no_er_available"]
    hospital_id: Identifier | None = None
    hospital_name: str | None = None
    destination: Position | None = None
    distance_km: float | None = Field(default=None, ge=0)
    eta_min: float | None = Field(default=None, ge=0)
    message: str = Field(max_length=500)

    @model_validator(mode="after")
    def _accepted_names_hospital(self) -> CaseDecisionV1:
        if self.status == "accepted" and not (self.hospital_id and self.destination):
            raise ValueError("an accepted decision names the hospital and its position")
        return self


class CaseUpdateV1(Payload):
    """Ambulance -> hub: cancel or divert a case, or add what the crew learnt
    (patient details, a new set of vitals, the handover)."""

    SCHEMA: ClassVar[str] = "case_update"
    VERSION: ClassVar[int] = 1

    ambulance_id: Identifier
    action: Literal["cancel", "divert", "patient", "vitals", "handover"]
    reason: str | None = Field(default=None, max_length=500)
    patient: Patient | None = None
    vitals: Vitals | None = None
    handover: dict[str, str] | None = None
    """Structured pre-arrival handover, e.g. ATMIST keys to text."""
    triage: Triage | None = None
    """With new vitals: the severity re-assessed from them and the image findings."""

    @model_validator(mode="after")
    def _action_has_its_data(self) -> CaseUpdateV1:
        needed = {"cancel": self.reason, "divert": self.reason, "patient": self.patient,
                  "vitals": self.vitals, "handover": self.handover}[self.action]
        if not needed:
            field = "reason" if self.action in ("cancel", "divert") else self.action
            raise ValueError(f"a {self.action} update needs {field}")
        return self


class OfferSummary(_Model):
    """One offer of a case as the ambulance sees it."""

    hospital_id: Identifier
    hospital_name: str
    state: Literal["open", "accepted", "declined", "expired", "withdrawn"]
    eta_min: float = Field(ge=0)


class CaseStatusV1(Payload):
    """Hub -> ambulance: the case's state after every change."""

    SCHEMA: ClassVar[str] = "case_status"
    VERSION: ClassVar[int] = 1

    state: Literal["offered", "accepted", "no_er_available", "cancelled"]
    offers: list[OfferSummary] = Field(default_factory=list, max_length=50)
    message: str = Field(max_length=500)
    images_verified: list[str] | None = Field(default=None, max_length=20)
    """sha256 of every full image the hub holds, complete and verified."""


class DispatchAlertV1(Payload):
    """Hub -> dispatch: something that needs a person: a case no ER accepted, or an
    ambulance whose AI predictions drifted from the model's validation distribution."""

    SCHEMA: ClassVar[str] = "dispatch_alert"
    VERSION: ClassVar[int] = 1

    # model_drift was added later; a widened literal leaves every earlier message valid
    kind: Literal["no_er_available", "model_drift"]
    ambulance_id: Identifier
    triage_level: int = Field(ge=1, le=5)
    message: str = Field(max_length=500)


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


class StatusV1(Payload):
    """Any participant: retained online/offline status (also the last will)."""

    SCHEMA: ClassVar[str] = "status"
    VERSION: ClassVar[int] = 1

    role: Literal["edge", "hub", "er"]
    state: Literal["online", "offline"]
    software_version: str


MAX_COUNT = 2**31 - 1
"""Largest image count: what a 32-bit signed integer column holds."""


class ModelIntake(_Model):
    """One model's image intake on an edge: images diagnosed and images refused."""

    model_name: str = Field(max_length=64)
    model_version: str = Field(max_length=32)
    diagnosed: int = Field(ge=0, le=MAX_COUNT)
    """Images diagnosed and queued as a case."""
    refused_not_chest: int = Field(ge=0, le=MAX_COUNT)
    """Refused as not a frontal chest radiograph: the out-of-distribution guard,
    another body part or modality, a lateral view."""
    refused_unreadable: int = Field(ge=0, le=MAX_COUNT)
    """Refused as an unusable file: corrupt, unsupported, blank, too small or
    large, no pixel data, or a synthetic image."""


class IntakeV1(Payload):
    """Ambulance -> hub: the edge's cumulative image intake per model since
    ``since`` (kept across restarts); retained, the latest counts replace the earlier."""

    SCHEMA: ClassVar[str] = "intake"
    VERSION: ClassVar[int] = 1

    since: AwareDatetime
    models: list[ModelIntake] = Field(max_length=32)


class PositionV1(Payload):
    """Ambulance -> hub: where the ambulance is now."""

    SCHEMA: ClassVar[str] = "position"
    VERSION: ClassVar[int] = 1

    position: Position
    speed_kmh: float | None = Field(default=None, ge=0, le=400)
    heading_deg: float | None = Field(default=None, ge=0, lt=360)


class CapacityV1(Payload):
    """ER -> hub: free beds and whether the ER accepts ambulances now."""

    SCHEMA: ClassVar[str] = "capacity"
    VERSION: ClassVar[int] = 1

    er_beds_free: int = Field(ge=0, le=10_000)
    icu_beds_free: int = Field(ge=0, le=10_000)
    accepting: bool = True


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    DiagnosisV1,
    OfferV1,
    ErDecisionV1,
    CaseDecisionV1,
    CaseUpdateV1,
    CaseStatusV1,
    DispatchAlertV1,
    ImageChunkV1,
    StatusV1,
    PositionV1,
    CapacityV1,
    IntakeV1,
)
