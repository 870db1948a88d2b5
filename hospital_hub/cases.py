"""The offer protocol: an explicit state machine with an audit trail.

A case comes in and is offered to the best ERs (``offer_count`` open at a
time). A decline, which needs a reason, or an expired offer brings in the
next candidate. The first accept wins; the other offers are withdrawn and
those ERs told; a late accept is answered "already placed". When nobody is
left, the ambulance hears ``no_er_available`` and dispatch is alerted. The
ambulance can cancel or divert, and hears the case's state after every change.

Every operation locks the case row first (``SELECT ... FOR UPDATE``; SQLite
locks the database), so concurrent decisions from several hub workers queue
up and the first accept to take the lock wins; the state change, its audit
event and the messages it causes commit in one transaction (see
:mod:`hospital_hub.outbox`). Choosing and telling the ERs is
:mod:`hospital_hub.offering`; the audit trail and triage labels are
:mod:`hospital_hub.case_audit`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from hospital_hub import messages, pacs
from hospital_hub.appended_rows import append
from hospital_hub.case_audit import (
    TRIAGE_LABELS,
    DecisionOutcome,
    DecisionResult,
    lock_case,
    record_event,
    triage_label,
)
from hospital_hub.db import session_scope
from hospital_hub.models import (
    Case,
    CaseDiagnosis,
    CaseStatus,
    CaseVitals,
    Hospital,
    Offer,
    OfferState,
    utcnow,
)
from hospital_hub.offering import CASE_OFFERS, OfferingService
from shared.errors import CaseError, NotFound
from shared.messages import CaseUpdateV1, DiagnosisV1, Envelope, Patient, Vitals

__all__ = ["TRIAGE_LABELS", "CaseService", "DecisionOutcome", "DecisionResult", "lock_case",
           "record_event", "triage_label"]

logger = logging.getLogger(__name__)

CASE_DIAGNOSES = CaseDiagnosis.__table__  # type: ignore[attr-defined]


class CaseService(OfferingService):
    """Applies incoming messages and console actions to the database."""

    # -- cases ----------------------------------------------------------------------
    def receive_diagnosis(self, envelope: Envelope[DiagnosisV1]) -> bool:
        """Store a new case and offer it, or add a further X-ray to a known case.

        Returns False (and changes nothing) for a duplicate message.
        """
        diagnosis = envelope.payload
        case_id = envelope.case_id
        if case_id is None:
            raise CaseError("diagnosis without a case id")
        with session_scope(self._engine) as session:
            if self._seen(session, envelope):
                logger.info("duplicate diagnosis dropped",
                            extra={"case_id": case_id, "message_id": str(envelope.message_id)})
                return False
            case = self._lock_case(session, case_id)
            new = case is None
            if case is None:
                case = Case(id=case_id, ambulance_id=diagnosis.ambulance_id,
                            lat=diagnosis.position.lat, lon=diagnosis.position.lon,
                            captured_at=diagnosis.captured_at, triage_level=diagnosis.triage.level,
                            triage_label=TRIAGE_LABELS[diagnosis.triage.level], model_name="")
            elif case.ambulance_id != diagnosis.ambulance_id:
                raise CaseError(f"case {case_id} belongs to ambulance {case.ambulance_id}")
            self._record_diagnosis(session, case, envelope)
            if new:
                self._event(session, case, "created", diagnosis.ambulance_id)
                offered = self._top_up(session, case, actor=self._sender)
                self._status(session, case, f"Offered to {len(offered)} ER(s).")
            else:
                offered = []
                self._status(session, case, "Further X-ray received.")
        logger.info("case received" if new else "further diagnosis added to case",
                    extra={"case_id": case_id, "ambulance_id": diagnosis.ambulance_id,
                           "triage_level": diagnosis.triage.level, "offered_to": offered})
        return True

    def _record_diagnosis(self, session: Session, case: Case,
                          envelope: Envelope[DiagnosisV1]) -> None:
        diagnosis = envelope.payload
        label = triage_label(diagnosis.triage.level, diagnosis.triage.label, case.id)
        case.triage_level, case.triage_label = diagnosis.triage.level, label
        case.top3 = [str(f) for f in diagnosis.top3]
        case.positive_findings = [str(s.finding) for s in diagnosis.findings if s.suspected]
        case.model_name = f"{diagnosis.model.name} {diagnosis.model.version}"
        case.placeholder_model = diagnosis.model.placeholder
        if diagnosis.patient:
            self._apply_patient(case, diagnosis.patient)
        session.add(case)
        append(session, CASE_DIAGNOSES, {  # nothing reads it back in this transaction
            "case_id": case.id, "message_id": str(envelope.message_id), "received_at": utcnow(),
            "model_name": diagnosis.model.name, "model_version": diagnosis.model.version,
            "model_sha256": diagnosis.model.sha256,
            "placeholder_model": diagnosis.model.placeholder,
            "triage_level": diagnosis.triage.level,
            "payload": diagnosis.model_dump(mode="json", exclude={"image": {"thumbnail_jpeg"}}),
            "thumbnail_jpeg": diagnosis.image.thumbnail_jpeg,
        })
        if diagnosis.vitals:
            self._add_vitals(session, case, diagnosis.vitals)
        self._event(session, case, "triage", diagnosis.ambulance_id,
                    level=diagnosis.triage.level, label=label,
                    reasons=diagnosis.triage.reasons, model=case.model_name,
                    placeholder=diagnosis.model.placeholder)

    @staticmethod
    def _apply_patient(case: Case, patient: Patient) -> None:
        for source, target in (("name", "patient_name"), ("age_years", "patient_age"),
                               ("sex", "patient_sex"), ("chief_complaint", "chief_complaint")):
            value = getattr(patient, source)
            if value is not None:
                setattr(case, target, value)

    @staticmethod
    def _add_vitals(session: Session, case: Case, vitals: Vitals) -> None:
        session.add(CaseVitals(case_id=case.id, **vitals.model_dump()))

    # -- decisions -----------------------------------------------------------------------
    def decide(
        self,
        case_id: str,
        hospital_id: str,
        decision: Literal["accept", "decline"],
        *,
        decided_by: str,
        reason: str | None = None,
        envelope: Envelope[Any] | None = None,
    ) -> DecisionResult:
        """Apply an ER's accept or decline (from MQTT or the console).

        Raises:
            NotFound: no offer of this case to this hospital exists.
            CaseError: a decline without a reason.
        """
        if decision == "decline" and not (reason and reason.strip()):
            raise CaseError("a decline needs a reason")
        with session_scope(self._engine) as session:
            case = self._lock_case(session, case_id)
            if self._seen(session, envelope):
                logger.info("duplicate decision dropped", extra={"case_id": case_id})
                return DecisionResult("duplicate", case.status if case else CaseStatus.OFFERED)
            # All the case's offers in one read: this one, and those an accept withdraws.
            offers = list(session.exec(CASE_OFFERS, params={"case_id": case_id}).all())
            offer = next((o for o in offers if o.hospital_id == hospital_id), None)
            if case is None or offer is None:
                raise NotFound(f"no offer of case {case_id} to hospital {hospital_id}")
            placed = case.accepted_hospital_id
            if offer.state != OfferState.OPEN:
                outcome: DecisionOutcome = ("already_placed" if decision == "accept" and placed
                                            and placed != hospital_id else "already_decided")
                self._event(session, case, "late_" + decision, decided_by,
                            hospital_id=hospital_id, offer_state=str(offer.state))
                logger.info("decision on a closed offer", extra={
                    "case_id": case_id, "hospital_id": hospital_id, "outcome": outcome})
                return DecisionResult(outcome, case.status, placed)
            now = utcnow()
            offer.decided_at, offer.decided_by, offer.reason = now, decided_by, reason
            if decision == "decline":
                offer.state = OfferState.DECLINED
                session.add(offer)
                self._event(session, case, "declined", decided_by, hospital_id=hospital_id,
                            reason=reason)
                if case.status == CaseStatus.OFFERED:
                    added = self._top_up(session, case, actor=self._sender)
                    self._status(session, case, f"{hospital_id} declined ({reason})"
                                 + (f"; offered to {', '.join(added)}" if added else ""))
                # The reason is clinician free text (may name the patient): not logged.
                logger.info("offer declined", extra={"case_id": case_id,
                                                     "hospital_id": hospital_id})
                return DecisionResult("declined", case.status)
            # The case row is locked, so its status is the truth: the first
            # accept to get here wins, later ones see ACCEPTED.
            if case.status != CaseStatus.OFFERED:
                offer.state = OfferState.WITHDRAWN
                session.add(offer)
                messages.offer_withdrawn(session, self._sender, case, offer,
                                         "Already placed: another ER accepted this patient first.")
                self._event(session, case, "late_accept", decided_by, hospital_id=hospital_id)
                return DecisionResult("already_placed", case.status, case.accepted_hospital_id)
            # Read before the changes, so that they are written together at the end.
            with session.no_autoflush:  # the offer's changes are written once, below
                hospital = session.get(Hospital, hospital_id)
            assert hospital is not None  # foreign key
            case.status, case.accepted_hospital_id, case.decided_at = (
                CaseStatus.ACCEPTED, hospital_id, now)
            offer.state = OfferState.ACCEPTED
            session.add(offer)
            self._withdraw_open(session, case, "Offer withdrawn: another ER accepted this "
                                "patient.", keep=offer.id, offers=offers)
            messages.decision_accepted(session, self._sender, case, offer, hospital)
            self._event(session, case, "accepted", decided_by, hospital_id=hospital_id)
            pacs.queue_push(session, case, hospital, actor=self._sender)  # sent by PacsPusher
            self._status(session, case, f"{hospital.name} accepts; {messages.minutes_text(offer.eta_min)}.")
        logger.info("offer accepted; decision queued for the ambulance",
                    extra={"case_id": case_id, "hospital_id": hospital_id,
                           "ambulance_id": case.ambulance_id, "decided_by": decided_by})
        return DecisionResult("accepted", CaseStatus.ACCEPTED, hospital_id)

    def expire_offers(self, now: datetime | None = None) -> int:
        """Expire open offers past their time and bring in the next ERs."""
        now = now or utcnow()
        with Session(self._engine) as session:
            case_ids = set(session.exec(
                select(Offer.case_id).where(Offer.state == OfferState.OPEN,
                                            col(Offer.expires_at) <= now)
            ).all())
        expired = 0
        for case_id in sorted(case_ids):
            with session_scope(self._engine) as session:
                case = self._lock_case(session, case_id)
                if case is None:
                    continue
                stale = [o for o in self._open_offers(session, case_id) if o.expires_at <= now]
                for offer in stale:
                    offer.state, offer.decided_at = OfferState.EXPIRED, now
                    session.add(offer)
                    messages.offer_withdrawn(session, self._sender, case, offer,
                                             "Offer expired without an answer.")
                    self._event(session, case, "expired", self._sender,
                                hospital_id=offer.hospital_id)
                expired += len(stale)
                if stale and case.status == CaseStatus.OFFERED:
                    added = self._top_up(session, case, actor=self._sender)
                    self._status(session, case, f"{len(stale)} offer(s) expired"
                                 + (f"; offered to {', '.join(added)}" if added else ""))
        if expired:
            logger.info("offers expired", extra={"count": expired})
        return expired

    # -- the ambulance's updates -----------------------------------------------------------
    def update_case(self, case_id: str, update_: CaseUpdateV1,
                    envelope: Envelope[Any] | None = None) -> CaseStatus:
        """Apply a cancel, divert, patient, vitals or handover update.

        Raises:
            NotFound: unknown case.
            CaseError: the case belongs to another ambulance, or is cancelled.
        """
        with session_scope(self._engine) as session:
            case = self._lock_case(session, case_id)
            if self._seen(session, envelope):
                return case.status if case else CaseStatus.OFFERED
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.ambulance_id != update_.ambulance_id:
                raise CaseError(f"case {case_id} belongs to ambulance {case.ambulance_id}")
            actor = update_.ambulance_id
            if case.status == CaseStatus.CANCELLED:
                raise CaseError(f"case {case_id} is cancelled")
            if update_.action == "patient" and update_.patient:
                self._apply_patient(case, update_.patient)
                self._event(session, case, "patient", actor,
                            **update_.patient.model_dump(exclude_none=True))
            elif update_.action == "vitals" and update_.vitals:
                self._add_vitals(session, case, update_.vitals)
                self._event(session, case, "vitals", actor,
                            **update_.vitals.model_dump(mode="json", exclude_none=True))
                if update_.triage:
                    label = triage_label(update_.triage.level, update_.triage.label, case.id)
                    case.triage_level, case.triage_label = update_.triage.level, label
                    self._event(session, case, "triage", actor, level=update_.triage.level,
                                label=label, reasons=update_.triage.reasons,
                                model=case.model_name)
            elif update_.action == "handover" and update_.handover:
                case.handover = dict(update_.handover)
                self._event(session, case, "handover", actor)
            elif update_.action == "cancel":
                self._release(session, case, f"Cancelled by the ambulance: {update_.reason}")
                case.status, case.decided_at = CaseStatus.CANCELLED, utcnow()
                self._event(session, case, "cancelled", actor, reason=update_.reason)
                self._status(session, case, f"Cancelled: {update_.reason}")
            elif update_.action == "divert":
                self._release(session, case, f"Ambulance diverted: {update_.reason}")
                case.status, case.accepted_hospital_id, case.decided_at = (
                    CaseStatus.OFFERED, None, None)
                self._event(session, case, "diverted", actor, reason=update_.reason)
                added = self._top_up(session, case, actor=actor)
                self._status(session, case, f"Diverted ({update_.reason}); offered to "
                             f"{', '.join(added) or 'nobody: no ER left'}")
            session.add(case)
            status = case.status
        logger.info("case updated", extra={"case_id": case_id, "action": update_.action,
                                           "status": str(status)})
        return status
