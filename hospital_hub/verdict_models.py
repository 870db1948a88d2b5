"""Tables and API shapes of the ER's verdict on an AI diagnosis and of the
model-drift alerts (SQLModel families: Base, Create, table, Public).

A verdict judges one stored diagnosis (so one model name, version and
sha256). For every one of the 14 findings the ER doctor says whether the AI's
call was right: ``confirmed`` (a suspected finding is present, or a finding
not suspected is absent), ``refuted`` (a suspected finding is absent, or a
finding not suspected is present: the AI missed it) or ``not_assessed``.
``added`` names the missed findings explicitly (the non-suspected findings
judged ``refuted``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import field_validator, model_validator
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from hospital_hub.models import _ts, utcnow
from shared.findings import FINDINGS, Finding


class Judgement(StrEnum):
    """The ER's judgement of the AI's call on one finding."""

    CONFIRMED = "confirmed"
    REFUTED = "refuted"
    NOT_ASSESSED = "not_assessed"


class VerdictCreate(SQLModel):
    """What an ER doctor (or an ER integration) submits about a case's latest diagnosis.

    Findings left out of ``judgements`` are not assessed; a finding in
    ``added`` (the AI missed it) is stored as ``refuted`` and must not be one
    the AI suspected (confirm that one instead)."""

    judgements: dict[Finding, Judgement] = {}
    added: list[Finding] = Field(default_factory=list, max_length=14)
    decided_by: str | None = Field(default=None, min_length=1, max_length=100)
    """An ER integration (service token) may name the clinician."""

    @field_validator("added")
    @classmethod
    def _unique(cls, value: list[Finding]) -> list[Finding]:
        if len(set(value)) != len(value):
            raise ValueError("a finding is added twice")
        return value

    @model_validator(mode="after")
    def _added_not_contradicted(self) -> VerdictCreate:
        if not self.added and all(j == Judgement.NOT_ASSESSED for j in self.judgements.values()):
            raise ValueError("judge at least one finding (confirmed or refuted) or add one")
        clash = [str(f) for f in self.added
                 if self.judgements.get(f) not in (None, Judgement.REFUTED)]
        if clash:
            raise ValueError(f"added findings also judged otherwise: {', '.join(clash)}")
        return self


class VerdictBase(SQLModel):
    """One ER's verdict on one diagnosis of a case."""

    case_id: str = Field(foreign_key="case.id", index=True, max_length=64)
    diagnosis_id: int = Field(foreign_key="casediagnosis.id", index=True)
    hospital_id: str | None = Field(default=None, foreign_key="hospital.id", max_length=64)
    """The ER whose doctor judged (None: an admin)."""
    ambulance_id: str = Field(max_length=64, index=True)
    model_name: str = Field(max_length=100)
    model_version: str = Field(max_length=50)
    model_sha256: str | None = Field(default=None, max_length=64)
    suspected: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """The findings the judged diagnosis suspected (probability at or above its threshold)."""
    judgements: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """Finding -> ``confirmed``, ``refuted`` or ``not_assessed``, for all 14."""
    added: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    judged_by: str = Field(max_length=128)


class Verdict(VerdictBase, table=True):
    """The latest verdict of one ER on one diagnosis (a new one replaces it;
    every submission is in the case's audit trail)."""

    __table_args__ = (UniqueConstraint("diagnosis_id", "hospital_id"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False, index=True))


class VerdictPublic(VerdictBase):
    """A verdict as the API shows it."""

    id: int
    created_at: datetime
    updated_at: datetime
    complete: bool = False
    """Every one of the 14 findings was assessed."""


class DriftAlertBase(SQLModel):
    """A device whose predicted probabilities moved away from the validation ones."""

    ambulance_id: str = Field(max_length=64, index=True)
    model_name: str = Field(max_length=100)
    model_version: str = Field(max_length=50)
    finding: str = Field(max_length=40)
    """The finding with the largest population stability index."""
    psi: float
    cases: int
    window_first_id: int
    """The first and last diagnosis (``casediagnosis.id``) of the window."""
    window_last_id: int
    case_id: str = Field(max_length=64)
    """The case whose diagnosis closed the window (the alert's topic names it)."""


class DriftAlert(DriftAlertBase, table=True):
    """One alert per device, model and window (windows do not overlap)."""

    __table_args__ = (UniqueConstraint("ambulance_id", "model_name", "model_version",
                                       "window_first_id"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    published: bool = False
    """Whether a dispatch alert message was written to the outbox."""


class DriftAlertPublic(DriftAlertBase):
    """A drift alert as the API shows it."""

    id: int
    created_at: datetime
    published: bool


def all_judgements(body: VerdictCreate) -> dict[str, str]:
    """All 14 findings' judgements, ``added`` ones refuted, the rest not assessed."""
    out = {str(f): Judgement.NOT_ASSESSED.value for f in FINDINGS}
    out.update({str(f): Judgement(j).value for f, j in body.judgements.items()})
    out.update({str(f): Judgement.REFUTED.value for f in body.added})
    return out
