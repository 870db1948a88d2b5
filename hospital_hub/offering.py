"""Offering a case to ERs: ranking the next candidates, opening, withdrawing
and re-offering offers, inside the caller's transaction.

:class:`OfferingService` is the base of :class:`hospital_hub.cases.CaseService`;
its helpers are also what :mod:`hospital_hub.presence_cases` overrides and reuses.
A top-up reads the case's offers once, skips that read for a case not yet
stored, and reads the ERs with their open-offer counts in one statement.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub import messages, pacs
from hospital_hub.case_audit import lock_case, record_event
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
from hospital_hub.ranking import Policy, Site, needs_for, rank_sites
from hospital_hub.settings import HubSettings
from hospital_hub.travel import Point, Router, make_router
from shared.errors import CaseError, NotFound
from shared.messages import Envelope

logger = logging.getLogger(__name__)

INSERT_IF_ABSENT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
"""The dialects whose insert has ``ON CONFLICT DO NOTHING ... RETURNING``."""


@functools.cache
def _record_message_id(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` of a message id: a plain
    statement on the table (not the ORM's bulk-insert path), built once."""
    table = ProcessedMessage.__table__  # type: ignore[attr-defined]
    return (INSERT_IF_ABSENT[dialect](table)
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(table.c.message_id))


# The hot statements, built once (building them anew for every message was a
# measurable part of a case's hub CPU).
CASE_OFFERS = select(Offer).where(Offer.case_id == bindparam("case_id"))
"""All the offers of a case (``params={"case_id": ...}``)."""
_OPEN_OFFERS = (select(Offer).where(Offer.case_id == bindparam("case_id"),
                                    Offer.state == OfferState.OPEN).order_by(col(Offer.rank)))
_PENDING = (select(Offer.hospital_id, func.count().label("open_offers"))
            .where(Offer.state == OfferState.OPEN).group_by(col(Offer.hospital_id)).subquery())
_HOSPITALS_WITH_OPEN_OFFERS = (select(Hospital, _PENDING.c.open_offers)
                               .outerjoin(_PENDING, _PENDING.c.hospital_id == Hospital.id)
                               .order_by(col(Hospital.id)))


class OfferingService:
    """The offer side of the protocol: who is asked next, and telling them."""

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
        dialect = session.get_bind().dialect.name
        if dialect in INSERT_IF_ABSENT:
            # One statement; a twin message in another worker's open transaction
            # waits for it and then counts as seen, instead of failing at commit.
            inserted = session.execute(_record_message_id(dialect), {
                "message_id": key, "schema_name": envelope.schema_name, "received_at": utcnow(),
            }).first()
            return inserted is None
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
        return list(session.exec(_OPEN_OFFERS, params={"case_id": case_id}).all())

    def _status(self, session: Session, case: Case, message: str) -> None:
        messages.case_status(session, self._sender, case, message)

    # -- ranking ------------------------------------------------------------------------
    def _origin(self, session: Session, case: Case) -> Point:
        """Where the ambulance is now: its latest position if newer than the case's."""
        ambulance = session.get(Ambulance, case.ambulance_id)
        if (ambulance and ambulance.lat is not None and ambulance.lon is not None
                and ambulance.position_at and ambulance.position_at > case.captured_at):
            return Point(ambulance.lat, ambulance.lon)
        return Point(case.lat, case.lon)

    def _sites(self, session: Session, exclude: set[str]) -> tuple[list[Site], list[Hospital]]:
        now = utcnow()
        rows = [(h, n) for h, n in session.exec(_HOSPITALS_WITH_OPEN_OFFERS).all()
                if h.id not in exclude]
        sites = [Site(
            id=h.id, name=h.name, er_beds=h.er_beds, icu_beds=h.icu_beds, ct=h.ct,
            thoracic_surgery=h.thoracic_surgery, chest_tube=h.chest_tube,
            isolation_rooms=h.isolation_rooms, paediatrics=h.paediatrics,
            er_beds_free=h.er_beds_free, icu_beds_free=h.icu_beds_free, accepting=h.accepting,
            capacity_age_s=(now - h.capacity_at).total_seconds() if h.capacity_at else None,
            open_offers=int(n or 0),
        ) for h, n in rows]
        return sites, [h for h, _ in rows]

    # -- offers -------------------------------------------------------------------------
    def _top_up(self, session: Session, case: Case, actor: str, reopen: bool = False) -> list[str]:
        """Bring the case's open offers up to ``offer_count`` with the next best
        ERs not yet asked (``reopen``: also those whose offer expired); with
        none open and none left, give up to dispatch."""
        # A case not stored yet has no offers: no need to ask the database.
        earlier = {} if inspect(case).pending else {o.hospital_id: o for o in session.exec(
            CASE_OFFERS, params={"case_id": case.id}).all()}
        open_count = sum(1 for o in earlier.values() if o.state == OfferState.OPEN)
        wanted = self._settings.offer_count - open_count
        asked = {h for h, o in earlier.items() if not (reopen and o.state == OfferState.EXPIRED)}
        chosen = []
        if wanted > 0:
            # Changes pending in this session touch only ERs already asked (left out
            # here), so the ranking reads need not flush them; for a new case the
            # row is then written once, with its final values.
            with session.no_autoflush:
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
            session.info.setdefault(messages.OFFERED_NAMES, {})[offer.hospital_id] = (
                candidate.site.name)
            messages.offer_open(session, self._sender, case, offer, candidate.explanation)
            self._event(session, case, "offered", actor, hospital_id=candidate.site.id,
                        rank=number, score=candidate.score, explanation=candidate.explanation)
        if not chosen and not open_count and case.status == CaseStatus.OFFERED:
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

    def _withdraw_open(self, session: Session, case: Case, why: str, keep: int | None = None,
                       offers: Iterable[Offer] | None = None) -> None:
        """Withdraw the case's open offers but ``keep``, telling each ER; ``offers``:
        all the case's offers, already loaded in this session (saves a read)."""
        open_offers = (self._open_offers(session, case.id) if offers is None else
                       sorted((o for o in offers if o.state == OfferState.OPEN),
                              key=lambda o: o.rank))
        for other in open_offers:
            if other.id != keep:
                other.state, other.decided_at = OfferState.WITHDRAWN, utcnow()
                session.add(other)
                messages.offer_withdrawn(session, self._sender, case, other, why)

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
