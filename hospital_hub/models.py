"""Database tables and API shapes, in SQLModel families (Base, table, Public)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import StrictBool, StrictInt, field_validator, model_validator
from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from hospital_hub.auth_models import (  # noqa: F401  (re-exported: the tables' home before)
    USERNAME,
    AccessLog,
    AccessLogBase,
    AccessLogPublic,
    LoginFailure,
    LoginSession,
    Role,
    User,
    UserBase,
    UserCreate,
    UserPublic,
)
from hospital_hub.db_types import UtcDateTime, utcnow  # noqa: F401  (re-exported)
from hospital_hub.db_types import ts_column as _ts


class CaseStatus(StrEnum):
    """Where a case stands. ``accepted`` can go back to ``offered`` when the
    ambulance diverts; ``cancelled`` is final; ``no_er_available`` waits for
    dispatch."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    NO_ER_AVAILABLE = "no_er_available"
    CANCELLED = "cancelled"


class OfferState(StrEnum):
    """An offer's life: open until accepted, declined, expired or withdrawn."""

    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


# -- hospitals ------------------------------------------------------------------
AE_TITLE = re.compile(r"(?! *$)[\x20-\x5b\x5d-\x7e]{1,16}")
"""A DICOM Application Entity title: 1 to 16 characters, not all spaces, no backslash."""


class HospitalBase(SQLModel):
    """An emergency department that can receive ambulances."""

    name: str = Field(max_length=200)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    er_beds: int = Field(ge=0)
    icu_beds: int = Field(ge=0)
    ct: bool = False
    thoracic_surgery: bool = False
    chest_tube: bool = False
    """Can place a chest drain now (thoracic surgery implies it)."""
    isolation_rooms: int = Field(default=0, ge=0)
    paediatrics: bool = False
    contact: str = Field(default="", max_length=200)
    pacs_ae_title: str | None = Field(default=None, max_length=16)
    """The ER's PACS (DICOM C-STORE SCP) that accepted cases are pushed to:
    its AE title, host and port, all three or none (no PACS: nothing is pushed)."""
    pacs_host: str | None = Field(default=None, max_length=255)
    pacs_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("pacs_ae_title", "pacs_host", "pacs_port", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        """An empty registry cell means "no PACS"."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _pacs_complete(self) -> HospitalBase:
        parts = (self.pacs_ae_title, self.pacs_host, self.pacs_port)
        if any(p is not None for p in parts) and any(p is None for p in parts):
            raise ValueError("a PACS needs pacs_ae_title, pacs_host and pacs_port (or none)")
        if self.pacs_ae_title is not None and not AE_TITLE.fullmatch(self.pacs_ae_title):
            raise ValueError("pacs_ae_title: 1 to 16 printable ASCII characters, no backslash")
        return self


class HospitalCreate(HospitalBase):
    """A registry row to import."""

    id: str = Field(max_length=64)


class HospitalLive(SQLModel):
    """Live capacity, from the ER over MQTT or its console; None until reported."""

    er_beds_free: int | None = Field(default=None, ge=0)
    icu_beds_free: int | None = Field(default=None, ge=0)
    accepting: bool = True
    capacity_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    capacity_source: str | None = Field(default=None, max_length=16)


class Hospital(HospitalBase, HospitalLive, table=True):
    """A hospital in the registry with its live capacity."""

    id: str = Field(primary_key=True, max_length=64)


class HospitalPublic(HospitalBase, HospitalLive):
    """A hospital as the API shows it."""

    id: str
    capacity_stale: bool = False


class CapacityUpdate(SQLModel):
    """An ER sets its capacity from its console (strict: ``{"accepting": 0}``
    is not a boolean; the registry's bed counts bound the free beds)."""

    er_beds_free: StrictInt = Field(ge=0, le=1000)
    icu_beds_free: StrictInt = Field(ge=0, le=1000)
    accepting: StrictBool = True


# -- cases ------------------------------------------------------------------------
class CaseBase(SQLModel):
    """What the hub knows of a case at a glance (from its latest diagnosis)."""

    ambulance_id: str = Field(max_length=64, index=True)
    triage_level: int = Field(ge=1, le=5, index=True)
    triage_label: str = Field(max_length=200)
    top3: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    positive_findings: list[str] = Field(default_factory=list,
                                         sa_column=Column(JSON, nullable=False))
    lat: float
    lon: float
    model_name: str = Field(max_length=100)
    placeholder_model: bool = False
    patient_name: str | None = Field(default=None, max_length=128)
    """None means unknown."""
    patient_age: int | None = Field(default=None, ge=0, le=130)
    patient_sex: str | None = Field(default=None, max_length=1)
    chief_complaint: str | None = Field(default=None, max_length=300)
    handover: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Case(CaseBase, table=True):
    """One patient transport decision, keyed by the edge's case id."""

    id: str = Field(primary_key=True, max_length=64)
    status: CaseStatus = Field(default=CaseStatus.OFFERED, index=True)
    accepted_hospital_id: str | None = Field(default=None, foreign_key="hospital.id", max_length=64)
    captured_at: datetime = Field(sa_column=_ts(nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class CasePublic(CaseBase):
    """A case as the API shows it, with its offers."""

    id: str
    status: CaseStatus
    accepted_hospital_id: str | None
    captured_at: datetime
    received_at: datetime
    decided_at: datetime | None
    updated_at: datetime
    offers: list[OfferPublic] = []


class CaseDiagnosis(SQLModel, table=True):
    """Every diagnosis a case received, with the model that made it."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    message_id: str = Field(max_length=36)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    model_name: str = Field(max_length=100)
    model_version: str = Field(max_length=50)
    model_sha256: str | None = Field(default=None, max_length=64)
    placeholder_model: bool = False
    triage_level: int
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # type: ignore[type-arg]
    """The diagnosis message's payload, without the thumbnail."""
    thumbnail_jpeg: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))


class CaseVitals(SQLModel, table=True):
    """One set of vital signs of a case's patient, in time order."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    taken_at: datetime = Field(sa_column=_ts(nullable=False))
    spo2_pct: int | None = None
    resp_rate: int | None = None
    heart_rate: int | None = None
    systolic_bp: int | None = None
    temperature_c: float | None = None
    avpu: str | None = Field(default=None, max_length=1)
    supplemental_o2: bool | None = None


class CaseImage(SQLModel, table=True):
    """A case's full-resolution image, reassembled from chunks and verified."""

    __table_args__ = (UniqueConstraint("case_id", "image_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    image_sha256: str = Field(max_length=64)
    media_type: str = Field(max_length=40)
    total_bytes: int
    chunk_count: int
    received_chunks: int = 0
    complete: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    completed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    """The whole image once every chunk has arrived and the digest matches."""


class ImageChunk(SQLModel, table=True):
    """One received chunk; deleted once its image is assembled."""

    __table_args__ = (UniqueConstraint("image_id", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="caseimage.id", index=True)
    index: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CaseEvent(SQLModel, table=True):
    """The audit trail: every state change of a case, who made it and why."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    kind: str = Field(max_length=40)
    actor: str = Field(max_length=128)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # type: ignore[type-arg]


# -- offers -------------------------------------------------------------------------
class OfferBase(SQLModel):
    """A case offered to one hospital."""

    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    hospital_id: str = Field(foreign_key="hospital.id", index=True, max_length=64)
    rank: int = Field(ge=1)
    distance_km: float = Field(ge=0)
    eta_min: float = Field(ge=0)


class Offer(OfferBase, table=True):
    """An offer and its outcome; one per (case, hospital)."""

    __table_args__ = (UniqueConstraint("case_id", "hospital_id"),)

    id: int | None = Field(default=None, primary_key=True)
    state: OfferState = Field(default=OfferState.OPEN, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    expires_at: datetime = Field(sa_column=_ts(nullable=False, index=True))
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    decided_by: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=500)


class OfferPublic(OfferBase):
    """An offer as the API shows it."""

    id: int
    state: OfferState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


# -- ambulances ----------------------------------------------------------------------
class AmbulanceBase(SQLModel):
    """The latest the hub has heard from an ambulance."""

    online: bool = False
    lat: float | None = None
    lon: float | None = None


class Ambulance(AmbulanceBase, table=True):
    """One ambulance's last status and position."""

    id: str = Field(primary_key=True, max_length=64)
    status_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    position_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class AmbulancePublic(AmbulanceBase):
    """An ambulance as the API shows it."""

    id: str
    status_at: datetime | None
    position_at: datetime | None


# -- plumbing: idempotency and the transactional outbox ---------------------------
class ProcessedMessage(SQLModel, table=True):
    """A message id already applied; its insert fails for a duplicate."""

    message_id: str = Field(primary_key=True, max_length=36)
    schema_name: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class DeadLetter(SQLModel, table=True):
    """A valid message that could not be applied (after retries), kept for a person."""

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    topic: str = Field(max_length=256)
    message_id: str = Field(max_length=36)
    case_id: str | None = Field(default=None, max_length=64)
    error: str = Field(max_length=2000)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class OutboxMessage(SQLModel, table=True):
    """A message written in the same transaction as the state change that
    caused it, and published afterwards; ``sent_at`` is set on the broker's ack."""

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=256)
    qos: int = 1
    retain: bool = False
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    message_id: str = Field(max_length=36)
    case_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True, index=True))
    attempts: int = 0


class PacsPush(SQLModel, table=True):
    """One DICOM instance (``what``: the ``image``, the ``sr`` or the ``sc``) of
    an accepted case to store in the accepting ER's PACS; retried with backoff
    until the PACS acknowledges it (see :mod:`hospital_hub.pacs`). ``data``
    holds the exact bytes sent, so a retry re-sends the same SOP Instance UID;
    it is cleared once the PACS has the instance."""

    __table_args__ = (UniqueConstraint("case_id", "hospital_id", "what"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    hospital_id: str = Field(foreign_key="hospital.id", max_length=64)
    what: str = Field(max_length=8)
    status: str = Field(default="pending", max_length=16, index=True)
    """``pending``, ``sent`` or ``abandoned`` (case diverted or cancelled, data purged)."""
    sop_class_uid: str | None = Field(default=None, max_length=64)
    sop_instance_uid: str | None = Field(default=None, max_length=64)
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    next_attempt_at: datetime = Field(default_factory=utcnow,
                                      sa_column=_ts(nullable=False, index=True))
    sent_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


CasePublic.model_rebuild()
from hospital_hub import intake_models as _intake_models  # noqa: E402,F401  (registers its table)
from hospital_hub import verdict_models as _verdict_models  # noqa: E402,F401  (registers its tables)
