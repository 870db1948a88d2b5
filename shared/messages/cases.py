"""A case's way to an ER: offers to hospitals, their decisions, the decision
sent to the ambulance, the crew's updates, the case's status and the alerts
for dispatch."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from shared.findings import Finding
from shared.ids import Identifier
from shared.messages.base import Payload, Position, WireModel
from shared.messages.diagnosis import Patient, Triage, Vitals


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


class OfferSummary(WireModel):
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
