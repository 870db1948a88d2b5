"""The API's request and response shapes. Request rules are in the schema
(the OpenAPI document states them), not only checked at run time."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, WithJsonSchema
from sqlmodel import Session, col, select

from hospital_hub.models import (
    AccessLogPublic,
    Case,
    CasePublic,
    CaseStatus,
    Hospital,
    HospitalPublic,
    Offer,
    OfferPublic,
    utcnow,
)
from shared.ids import Identifier
from shared.messages import CaseUpdateV1, Patient, Triage, Vitals

ISO_TIME = (r"^(19[7-9]\d|2[01]\d\d|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
            r"T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)$")
"""An ISO 8601 time with its zone, years 1970 to 2200 (a number is not a time here)."""


def _iso_text(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(ISO_TIME, value):
        raise ValueError("a time is YYYY-MM-DDTHH:MM[:SS[.ffffff]] with a zone (Z or +HH:MM), "
                         "years 1970 to 2200")
    return value


def _plausible(value: Any) -> Any:
    if not 1970 <= value.year <= 2200:
        raise ValueError("date must be between 1970 and 2200")
    return value


QueryTime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_plausible),
                      WithJsonSchema({"type": "string", "pattern": ISO_TIME,
                                      "description": "ISO 8601 with a zone, 1970 to 2200"})]
"""A query's time: ISO 8601 text with a zone, years 1970-2200, as the schema says."""

# -- requests ----------------------------------------------------------------------------------
class AcceptBody(BaseModel):
    """Accept the offer; ``decided_by``: the clinician, when an integration sends it."""

    decision: Literal["accept"]
    decided_by: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=500)


class DeclineBody(BaseModel):
    """Decline the offer: a reason is required (not blank)."""

    decision: Literal["decline"]
    decided_by: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


DecisionBody = Annotated[AcceptBody | DeclineBody, Field(discriminator="decision")]


class _Update(BaseModel):
    ambulance_id: Identifier

    def message(self) -> CaseUpdateV1:
        """The same update as the MQTT message (these shapes are stricter: it validates)."""
        return CaseUpdateV1.model_validate(self.model_dump(exclude_none=True))


class CancelOrDivert(_Update):
    """Cancel the case or divert the ambulance: a reason is required (not blank)."""

    action: Literal["cancel", "divert"]
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class PatientUpdate(_Update):
    """What the crew learnt of the patient."""

    action: Literal["patient"]
    patient: Patient


class VitalsUpdate(_Update):
    """A new set of vitals, with the triage the ambulance re-assessed from them."""

    action: Literal["vitals"]
    vitals: Vitals
    triage: Triage | None = None


class HandoverUpdate(_Update):
    """The structured pre-arrival handover (e.g. ATMIST keys to text)."""

    action: Literal["handover"]
    handover: dict[str, str] = Field(min_length=1)


UpdateBody = Annotated[CancelOrDivert | PatientUpdate | VitalsUpdate | HandoverUpdate,
                       Field(discriminator="action")]


# -- responses ---------------------------------------------------------------------------------
class DecisionResponse(BaseModel):
    """What the decision did; ``placed_at`` names the ER that has the patient."""

    outcome: str
    case_status: CaseStatus
    placed_at: str | None = None


class CasePage(BaseModel):
    """One page of the case history."""

    items: list[CasePublic]
    total: int
    limit: int
    offset: int


class CaseAudit(BaseModel):
    """Who saw or changed a case: the access log and the case's own trail."""

    case_id: str
    access: list[AccessLogPublic]
    """Views and changes through the web pages and the API, oldest first."""
    events: list[dict[str, Any]]
    """The case's state changes (from any source: MQTT, API, housekeeping)."""


def case_public(session: Session, case: Case) -> CasePublic:
    """A case with its offers, by rank."""
    offers = session.exec(select(Offer).where(Offer.case_id == case.id).order_by(col(Offer.rank)))
    return CasePublic.model_validate(
        {**case.model_dump(), "offers": [OfferPublic.model_validate(o) for o in offers]}
    )


def hospital_public(hospital: Hospital, stale_after_s: float) -> HospitalPublic:
    """A hospital with whether its capacity report is too old to trust."""
    stale = (hospital.capacity_at is None
             or utcnow() - hospital.capacity_at > timedelta(seconds=stale_after_s))
    return HospitalPublic.model_validate({**hospital.model_dump(), "capacity_stale": stale})


def all_hospitals(session: Session, stale_after_s: float) -> list[HospitalPublic]:
    """Every hospital of the registry, by id."""
    return [hospital_public(h, stale_after_s)
            for h in session.exec(select(Hospital).order_by(col(Hospital.id))).all()]
