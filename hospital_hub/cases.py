"""The offer state machine: a case comes in, ERs are offered it, the first
accept wins, and the ambulance is told. Every change and the messages it
causes commit in one transaction (see :mod:`hospital_hub.outbox`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.db import session_scope
from hospital_hub.models import (
    Ambulance,
    Case,
    CaseStatus,
    Hospital,
    Offer,
    OfferState,
    ProcessedMessage,
    utcnow,
)
from hospital_hub.outbox import enqueue
from hospital_hub.ranking import Site, rank_sites
from hospital_hub.settings import HubSettings
from shared import topics
from shared.errors import CaseError, NotFound
from shared.messages import (
    CaseDecisionV1,
    DiagnosisV1,
    Envelope,
    OfferV1,
    Position,
    PositionV1,
    StatusV1,
)

logger = logging.getLogger(__name__)

AI_NOTICE = "AI result, not for clinical use"

DecisionOutcome = Literal["accepted", "declined", "too_late", "already_decided", "duplicate"]


@dataclass(frozen=True)
class DecisionResult:
    """What an ER's decision did."""

    outcome: DecisionOutcome
    case_status: CaseStatus


class CaseService:
    """Applies incoming messages and console actions to the database."""

    def __init__(self, engine: Engine, settings: HubSettings) -> None:
        self._engine = engine
        self._settings = settings
        self._sender = settings.hub_id

    # -- idempotency --------------------------------------------------------------
    @staticmethod
    def _seen(session: Session, envelope: Envelope[Any]) -> bool:
        """Record the message id; return True if it was already applied."""
        key = str(envelope.message_id)
        if session.get(ProcessedMessage, key) is not None:
            return True
        session.add(ProcessedMessage(message_id=key, schema_name=envelope.schema_name))
        return False

    # -- cases ----------------------------------------------------------------------
    def receive_diagnosis(self, envelope: Envelope[DiagnosisV1]) -> bool:
        """Store a new case and offer it to the best ERs.

        Returns False (and changes nothing) for a duplicate message or a case
        id that already exists.
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
            if session.get(Case, case_id) is not None:
                logger.warning("case already known; diagnosis dropped", extra={"case_id": case_id})
                return False
            case = Case(
                id=case_id,
                ambulance_id=diagnosis.ambulance_id,
                triage_level=diagnosis.triage.level,
                triage_label=diagnosis.triage.label,
                top3=[str(f) for f in diagnosis.top3],
                lat=diagnosis.position.lat,
                lon=diagnosis.position.lon,
                model_name=f"{diagnosis.model.name} {diagnosis.model.version}",
                placeholder_model=diagnosis.model.placeholder,
                captured_at=diagnosis.captured_at,
                diagnosis=diagnosis.model_dump(mode="json", exclude={"image": {"thumbnail_jpeg"}}),
                thumbnail_jpeg=diagnosis.image.thumbnail_jpeg,
            )
            session.add(case)
            session.flush()
            offered = self._offer_next(session, case)
        logger.info(
            "case received",
            extra={"case_id": case_id, "ambulance_id": diagnosis.ambulance_id,
                   "triage_level": diagnosis.triage.level, "offered_to": offered},
        )
        return True

    def _offer_next(self, session: Session, case: Case) -> list[str]:
        """Offer ``case`` to the next best ERs not yet asked; if none is left
        and no offer is open, tell the ambulance that no ER is available."""
        asked = set(session.exec(select(Offer.hospital_id).where(Offer.case_id == case.id)).all())
        hospitals = session.exec(select(Hospital)).all()
        sites = [Site(h.id, h.name, h.lat, h.lon, h.er_beds) for h in hospitals]
        candidates = rank_sites(case.lat, case.lon, case.triage_level, sites, exclude=asked)
        chosen = candidates[: self._settings.offer_count]
        now = utcnow()
        expires = now + timedelta(seconds=self._settings.offer_ttl_s)
        for candidate in chosen:
            rank = len(asked) + candidate.rank
            session.add(Offer(
                case_id=case.id, hospital_id=candidate.site.id, rank=rank,
                distance_km=candidate.distance_km, eta_min=candidate.eta_min,
                created_at=now, expires_at=expires,
            ))
            enqueue(
                session, topics.ER_OFFER,
                OfferV1(
                    hospital_id=candidate.site.id, ambulance_id=case.ambulance_id, state="open",
                    rank=rank, distance_km=candidate.distance_km, eta_min=candidate.eta_min,
                    expires_at=expires, triage_level=case.triage_level,
                    top3=case.top3,  # type: ignore[arg-type]
                    summary=(f"Triage {case.triage_level} ({case.triage_label}); "
                             f"{candidate.explanation}; {AI_NOTICE}"),
                ),
                sender=self._sender, case_id=case.id, hospital_id=candidate.site.id,
            )
        if not chosen and not self._open_offers(session, case.id):
            case.status = CaseStatus.NO_ER_AVAILABLE
            case.decided_at = now
            session.add(case)
            enqueue(
                session, topics.CASE_DECISION,
                CaseDecisionV1(status="no_er_available",
                               message="No ER accepted; call dispatch for a manual allocation."),
                sender=self._sender, case_id=case.id, ambulance_id=case.ambulance_id,
            )
            logger.warning("no ER available", extra={"case_id": case.id, "asked": len(asked)})
        return [c.site.id for c in chosen]

    @staticmethod
    def _lock_case(session: Session, case_id: str) -> Case | None:
        """Load the case with a row lock (PostgreSQL; SQLite locks the database)."""
        return session.exec(select(Case).where(Case.id == case_id).with_for_update()).first()

    @staticmethod
    def _open_offers(session: Session, case_id: str) -> list[Offer]:
        return list(session.exec(
            select(Offer).where(Offer.case_id == case_id, Offer.state == OfferState.OPEN)
        ).all())

    # -- decisions -------------------------------------------------------------------
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

        The first accept wins through a conditional update, so two ERs
        accepting at once cannot both get the patient.

        Raises:
            NotFound: no offer of this case to this hospital exists.
        """
        with session_scope(self._engine) as session:
            # Every change to a case's offers locks the case row first, so
            # concurrent decisions queue up instead of deadlocking on offer rows.
            case = self._lock_case(session, case_id)
            if envelope is not None and self._seen(session, envelope):
                logger.info("duplicate decision dropped",
                            extra={"case_id": case_id, "message_id": str(envelope.message_id)})
                return DecisionResult("duplicate", case.status if case else CaseStatus.OFFERED)
            offer = session.exec(
                select(Offer).where(Offer.case_id == case_id, Offer.hospital_id == hospital_id)
            ).first()
            if case is None or offer is None:
                raise NotFound(f"no offer of case {case_id} to hospital {hospital_id}")
            if offer.state != OfferState.OPEN:
                logger.info("decision on a closed offer ignored",
                            extra={"case_id": case_id, "hospital_id": hospital_id,
                                   "offer_state": str(offer.state), "decision": decision})
                return DecisionResult("already_decided", case.status)
            now = utcnow()
            offer.decided_at, offer.decided_by, offer.reason = now, decided_by, reason
            if decision == "decline":
                offer.state = OfferState.DECLINED
                session.add(offer)
                session.flush()
                logger.info("offer declined", extra={"case_id": case_id, "hospital_id": hospital_id,
                                                     "reason": reason})
                if case.status == CaseStatus.OFFERED and not self._open_offers(session, case_id):
                    self._offer_next(session, case)
                return DecisionResult("declined", case.status)
            won = session.execute(
                update(Case)
                .where(col(Case.id) == case_id, col(Case.status) == CaseStatus.OFFERED)
                .values(status=CaseStatus.ACCEPTED, accepted_hospital_id=hospital_id,
                        decided_at=now)
            ).rowcount == 1
            if not won:
                offer.state = OfferState.WITHDRAWN
                session.add(offer)
                self._withdraw(session, case, offer)
                logger.info("accept came too late", extra={"case_id": case_id,
                                                           "hospital_id": hospital_id})
                return DecisionResult("too_late", case.status)
            offer.state = OfferState.ACCEPTED
            session.add(offer)
            for other in self._open_offers(session, case_id):
                if other.id != offer.id:
                    other.state = OfferState.WITHDRAWN
                    other.decided_at = now
                    session.add(other)
                    self._withdraw(session, case, other)
            hospital = session.get(Hospital, hospital_id)
            assert hospital is not None  # foreign key
            enqueue(
                session, topics.CASE_DECISION,
                CaseDecisionV1(
                    status="accepted", hospital_id=hospital.id, hospital_name=hospital.name,
                    destination=Position(lat=hospital.lat, lon=hospital.lon),
                    distance_km=offer.distance_km, eta_min=offer.eta_min,
                    message=f"{hospital.name} accepts the patient; about {offer.eta_min:.0f} min.",
                ),
                sender=self._sender, case_id=case_id, ambulance_id=case.ambulance_id,
            )
        logger.info("offer accepted; decision queued for the ambulance",
                    extra={"case_id": case_id, "hospital_id": hospital_id,
                           "ambulance_id": case.ambulance_id, "decided_by": decided_by})
        return DecisionResult("accepted", CaseStatus.ACCEPTED)

    def _withdraw(self, session: Session, case: Case, offer: Offer) -> None:
        enqueue(
            session, topics.ER_OFFER,
            OfferV1(
                hospital_id=offer.hospital_id, ambulance_id=case.ambulance_id, state="withdrawn",
                rank=offer.rank, distance_km=offer.distance_km, eta_min=offer.eta_min,
                expires_at=offer.expires_at, triage_level=case.triage_level,
                top3=case.top3,  # type: ignore[arg-type]
                summary="Offer withdrawn: another ER has accepted this patient.",
            ),
            sender=self._sender, case_id=case.id, hospital_id=offer.hospital_id,
        )

    def expire_offers(self, now: datetime | None = None) -> int:
        """Mark open offers past their expiry as expired and offer those
        cases onward; returns how many offers expired."""
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
                stale = session.exec(
                    select(Offer).where(Offer.case_id == case_id, Offer.state == OfferState.OPEN,
                                        col(Offer.expires_at) <= now)
                ).all()
                for offer in stale:
                    offer.state = OfferState.EXPIRED
                    offer.decided_at = now
                    session.add(offer)
                    self._withdraw(session, case, offer)
                session.flush()
                expired += len(stale)
                if case.status == CaseStatus.OFFERED and not self._open_offers(session, case_id):
                    self._offer_next(session, case)
        if expired:
            logger.info("offers expired", extra={"count": expired})
        return expired

    # -- ambulances --------------------------------------------------------------------
    def ambulance_status(self, ambulance_id: str, envelope: Envelope[StatusV1]) -> None:
        """Record an ambulance's online/offline status."""
        with session_scope(self._engine) as session:
            ambulance = session.get(Ambulance, ambulance_id) or Ambulance(id=ambulance_id)
            ambulance.online = envelope.payload.state == "online"
            ambulance.status_at = envelope.sent_at
            session.add(ambulance)
        logger.info("ambulance status", extra={"ambulance_id": ambulance_id,
                                               "state": envelope.payload.state})

    def ambulance_position(self, ambulance_id: str, envelope: Envelope[PositionV1]) -> None:
        """Keep the latest position per ambulance (older reports are ignored)."""
        with session_scope(self._engine) as session:
            ambulance = session.get(Ambulance, ambulance_id) or Ambulance(id=ambulance_id)
            if ambulance.position_at and ambulance.position_at >= envelope.sent_at:
                return
            ambulance.lat = envelope.payload.position.lat
            ambulance.lon = envelope.payload.position.lon
            ambulance.position_at = envelope.sent_at
            session.add(ambulance)
