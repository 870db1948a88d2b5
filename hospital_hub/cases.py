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
:mod:`hospital_hub.outbox`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub import messages, pacs
from hospital_hub.db import session_scope
from hospital_hub.models import (
    Ambulance,
    Case,
    CaseDiagnosis,
    CaseEvent,
    CaseStatus,
    CaseVitals,
    Hospital,
    Offer,
    OfferState,
    ProcessedMessage,
    utcnow,
)
from hospital_hub.ranking import Policy, Site, needs_for, rank_sites
from hospital_hub.settings import HubSettings
from hospital_hub.travel import Point, Router, make_router
from shared.errors import CaseError, NotFound
from shared.messages import CaseUpdateV1, DiagnosisV1, Envelope, Patient, Vitals
from shared.notice import AI_NOTICE as AI_NOTICE  # the pages still import it from here

logger = logging.getLogger(__name__)

TRIAGE_LABELS = {1: "resuscitation", 2: "emergent", 3: "urgent", 4: "less urgent",
                 5: "non-urgent"}
"""The label of each triage level (CTAS); the hub stores this, never a label sent with another level."""

DecisionOutcome = Literal["accepted", "declined", "already_placed", "already_decided",
                          "duplicate"]


@dataclass(frozen=True)
class DecisionResult:
    """What an ER's decision did."""

    outcome: DecisionOutcome
    case_status: CaseStatus
    placed_at: str | None = None
    """The hospital that has the patient, for an "already placed" answer."""


def record_event(session: Session, case: Case, kind: str, actor: str, **detail: Any) -> None:
    """Append to the case's audit trail (in the caller's transaction)."""
    now = utcnow()
    case.updated_at = now
    session.add(case)
    session.add(CaseEvent(case_id=case.id, at=now, kind=kind, actor=actor, detail=detail))


def triage_label(level: int, sent: str, case_id: str) -> str:
    """The label of ``level``; a different label sent with it is logged and not stored."""
    label = TRIAGE_LABELS[level]
    if sent.strip().lower() != label:
        logger.warning("triage label does not match its level; the level's label is stored",
                       extra={"case_id": case_id, "level": level, "label_sent": sent[:40]})
    return label


def lock_case(session: Session, case_id: str) -> Case | None:
    """Load a case with its row locked (PostgreSQL; SQLite locks the database)."""
    return session.exec(select(Case).where(Case.id == case_id).with_for_update()).first()


class CaseService:
    """Applies incoming messages and console actions to the database."""

    def __init__(self, engine: Engine, settings: HubSettings, router: Router | None = None,
                 policy: Policy | None = None) -> None:
        self._engine = engine
        self._settings = settings
        self._sender = settings.hub_id
        self.router: Router = router or make_router(settings.routing_url, settings.routing_timeout_s)
        """Travel times to ERs (also the live ETA of an accepted case)."""
        self._policy = policy or Policy(stale_after_s=settings.capacity_stale_s)

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _seen(session: Session, envelope: Envelope[Any] | None) -> bool:
        """Record the message id; return True if it was already applied."""
        if envelope is None:
            return False
        key = str(envelope.message_id)
        if session.get(ProcessedMessage, key) is not None:
            return True
        session.add(ProcessedMessage(message_id=key, schema_name=envelope.schema_name))
        return False

    _lock_case = staticmethod(lock_case)

    @staticmethod
    def _event(session: Session, case: Case, kind: str, actor: str, **detail: Any) -> None:
        record_event(session, case, kind, actor, **detail)

    @staticmethod
    def _open_offers(session: Session, case_id: str) -> list[Offer]:
        return list(session.exec(
            select(Offer).where(Offer.case_id == case_id, Offer.state == OfferState.OPEN)
            .order_by(col(Offer.rank))
        ).all())

    def _status(self, session: Session, case: Case, message: str) -> None:
        messages.case_status(session, self._sender, case, message)

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
        session.add(CaseDiagnosis(
            case_id=case.id, message_id=str(envelope.message_id), model_name=diagnosis.model.name,
            model_version=diagnosis.model.version, model_sha256=diagnosis.model.sha256,
            placeholder_model=diagnosis.model.placeholder, triage_level=diagnosis.triage.level,
            payload=diagnosis.model_dump(mode="json", exclude={"image": {"thumbnail_jpeg"}}),
            thumbnail_jpeg=diagnosis.image.thumbnail_jpeg,
        ))
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

    # -- offers -------------------------------------------------------------------------
    def _origin(self, session: Session, case: Case) -> Point:
        """Where the ambulance is now: its latest position if newer than the case's."""
        ambulance = session.get(Ambulance, case.ambulance_id)
        if (ambulance and ambulance.lat is not None and ambulance.lon is not None
                and ambulance.position_at and ambulance.position_at > case.captured_at):
            return Point(ambulance.lat, ambulance.lon)
        return Point(case.lat, case.lon)

    def _sites(self, session: Session, exclude: set[str]) -> tuple[list[Site], list[Hospital]]:
        now = utcnow()
        pending = dict(session.exec(
            select(Offer.hospital_id, func.count()).where(Offer.state == OfferState.OPEN)
            .group_by(col(Offer.hospital_id))
        ).all())
        hospitals = [h for h in session.exec(select(Hospital).order_by(col(Hospital.id))).all()
                     if h.id not in exclude]
        sites = [Site(
            id=h.id, name=h.name, er_beds=h.er_beds, icu_beds=h.icu_beds, ct=h.ct,
            thoracic_surgery=h.thoracic_surgery, chest_tube=h.chest_tube,
            isolation_rooms=h.isolation_rooms, paediatrics=h.paediatrics,
            er_beds_free=h.er_beds_free, icu_beds_free=h.icu_beds_free, accepting=h.accepting,
            capacity_age_s=(now - h.capacity_at).total_seconds() if h.capacity_at else None,
            open_offers=int(pending.get(h.id, 0)),
        ) for h in hospitals]
        return sites, hospitals

    def _top_up(self, session: Session, case: Case, actor: str, reopen: bool = False) -> list[str]:
        """Bring the case's open offers up to ``offer_count`` with the next best
        ERs not yet asked (``reopen``: also those whose offer expired); with
        none open and none left, give up to dispatch."""
        open_offers = self._open_offers(session, case.id)
        wanted = self._settings.offer_count - len(open_offers)
        earlier = {o.hospital_id: o for o in session.exec(
            select(Offer).where(Offer.case_id == case.id)).all()}
        asked = {h for h, o in earlier.items() if not (reopen and o.state == OfferState.EXPIRED)}
        chosen = []
        if wanted > 0:
            sites, hospitals = self._sites(session, exclude=asked)
            origin = self._origin(session, case)
            travel = dict(zip((s.id for s in sites), self.router.travel(
                origin, [Point(h.lat, h.lon) for h in hospitals], case.triage_level),
                strict=True))
            needs = needs_for(case.triage_level, case.positive_findings, case.patient_age)
            chosen = rank_sites(sites, travel, needs, self._policy, exclude=asked)[:wanted]
        now = utcnow()
        expires = now + timedelta(seconds=self._settings.offer_ttl_s)
        for number, candidate in enumerate(chosen, start=len(earlier) + 1):
            # An offer is one row per (case, hospital): a re-offer reopens the expired one.
            offer = earlier.get(candidate.site.id) or Offer(
                case_id=case.id, hospital_id=candidate.site.id, rank=number, distance_km=0,
                eta_min=0, expires_at=expires)
            offer.rank, offer.state, offer.created_at, offer.expires_at = (
                number, OfferState.OPEN, now, expires)
            offer.distance_km, offer.eta_min = (candidate.travel.distance_km,
                                                candidate.travel.eta_min)
            offer.decided_at = offer.decided_by = offer.reason = None
            session.add(offer)
            messages.offer_open(session, self._sender, case, offer, candidate.explanation)
            self._event(session, case, "offered", actor, hospital_id=candidate.site.id,
                        rank=number, score=candidate.score, explanation=candidate.explanation)
        if not chosen and not open_offers and case.status == CaseStatus.OFFERED:
            case.status = CaseStatus.NO_ER_AVAILABLE
            case.decided_at = now
            messages.no_er_available(session, self._sender, case, asked=len(asked))
            self._event(session, case, "no_er_available", actor, asked=len(asked))
            logger.warning("no ER available; dispatch alerted",
                           extra={"case_id": case.id, "asked": len(asked)})
        return [c.site.id for c in chosen]

    def reoffer(self, case_id: str, actor: str) -> list[str]:
        """Dispatch's "re-offer now" for a case no ER took: rank the ERs afresh
        (those that declined it stay out; those whose offer expired are asked
        again) and offer it. Returns the ERs offered; none leaves the case as it was.

        Raises:
            NotFound: unknown case.
            CaseError: the case is not waiting for an ER (``no_er_available``).
        """
        with session_scope(self._engine) as session:
            case = self._lock_case(session, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.status != CaseStatus.NO_ER_AVAILABLE:
                raise CaseError(f"case {case_id} is {case.status.value}, not waiting for an ER")
            added = self._top_up(session, case, actor=actor, reopen=True)
            self._event(session, case, "reoffered", actor, offered_to=added)
            if added:
                case.status, case.decided_at = CaseStatus.OFFERED, None
                self._status(session, case, f"Dispatch re-offered the case to {', '.join(added)}.")
            session.add(case)
        logger.info("case re-offered by dispatch" if added else "re-offer found no ER",
                    extra={"case_id": case_id, "actor": actor, "offered_to": added})
        return added

    def _withdraw_open(self, session: Session, case: Case, why: str,
                       keep: int | None = None) -> None:
        for other in self._open_offers(session, case.id):
            if other.id != keep:
                other.state, other.decided_at = OfferState.WITHDRAWN, utcnow()
                session.add(other)
                messages.offer_withdrawn(session, self._sender, case, other, why)

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
            offer = session.exec(
                select(Offer).where(Offer.case_id == case_id, Offer.hospital_id == hospital_id)
            ).first()
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
            case.status, case.accepted_hospital_id, case.decided_at = (
                CaseStatus.ACCEPTED, hospital_id, now)
            offer.state = OfferState.ACCEPTED
            session.add(offer)
            self._withdraw_open(session, case, "Offer withdrawn: another ER accepted this "
                                "patient.", keep=offer.id)
            hospital = session.get(Hospital, hospital_id)
            assert hospital is not None  # foreign key
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

    def _release(self, session: Session, case: Case, why: str) -> None:
        """Withdraw every open offer and release the accepted ER, telling each."""
        self._withdraw_open(session, case, why)
        if case.status == CaseStatus.ACCEPTED and case.accepted_hospital_id:
            accepted = session.exec(select(Offer).where(
                Offer.case_id == case.id, Offer.hospital_id == case.accepted_hospital_id)).first()
            if accepted is not None:
                accepted.state = OfferState.WITHDRAWN
                session.add(accepted)
                messages.offer_withdrawn(session, self._sender, case, accepted,
                                         f"Patient no longer coming. {why}")
            pacs.withdraw(session, case, case.accepted_hospital_id,
                          f"Patient no longer coming. {why}", actor=self._sender)
