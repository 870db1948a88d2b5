"""Payload models of the message contract, one class per (schema, version).

Field names are the wire names. Readers ignore payload fields they do not know
(tolerant reader), so a field may be added, with a default, within a version;
any other change (rename, removal, new meaning, new type) is a new version
registered beside the old one.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.findings import FINDINGS, Finding
from shared.ids import Identifier

Probability = float


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


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
    """One finding's probability against the model's operating threshold."""

    finding: Finding
    probability: Probability = Field(ge=0, le=1)
    threshold: Probability = Field(ge=0, le=1)

    @property
    def positive(self) -> bool:
        """Whether the probability reaches the operating threshold."""
        return self.probability >= self.threshold


class Region(_Model):
    """A suspicious region, in coordinates normalised to the image (0..1)."""

    finding: Finding
    x1: float = Field(ge=0, le=1)
    y1: float = Field(ge=0, le=1)
    x2: float = Field(ge=0, le=1)
    y2: float = Field(ge=0, le=1)
    score: Probability = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError("region needs x1 < x2 and y1 < y2")
        return self


class Triage(_Model):
    """Severity level, 1 (immediate) to 5 (non-urgent), with its reasons."""

    level: int = Field(ge=1, le=5)
    label: str
    reasons: list[str] = Field(default_factory=list)


class ModelInfo(_Model):
    """Which model produced a result; ``placeholder`` marks a non-model stand-in."""

    name: str
    version: str
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
    """What the crew knows of the patient; every field optional."""

    age_years: int | None = Field(default=None, ge=0, le=130)
    sex: Literal["F", "M", "X"] | None = None


class DiagnosisV1(Payload):
    """Edge -> hub: the AI result for one chest X-ray of a case."""

    SCHEMA: ClassVar[str] = "diagnosis"
    VERSION: ClassVar[int] = 1
    MAX_BYTES: ClassVar[int] = 128 * 1024

    ambulance_id: Identifier
    captured_at: AwareDatetime
    position: Position
    image: ImageInfo
    model: ModelInfo
    findings: list[FindingScore]
    top3: list[Finding] = Field(max_length=3)
    regions: list[Region] = Field(default_factory=list, max_length=64)
    triage: Triage
    timings_ms: dict[str, float] = Field(default_factory=dict)
    patient: Patient | None = None

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
    rank: int = Field(ge=1)
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


class StatusV1(Payload):
    """Any participant: retained online/offline status (also the last will)."""

    SCHEMA: ClassVar[str] = "status"
    VERSION: ClassVar[int] = 1

    role: Literal["edge", "hub", "er"]
    state: Literal["online", "offline"]
    software_version: str


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

    er_beds_free: int = Field(ge=0)
    icu_beds_free: int = Field(ge=0)
    accepting: bool = True


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    DiagnosisV1,
    OfferV1,
    ErDecisionV1,
    CaseDecisionV1,
    StatusV1,
    PositionV1,
    CapacityV1,
)
