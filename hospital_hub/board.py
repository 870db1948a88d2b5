"""What the dispatch board and the ER console list: every unresolved case and
every open offer (never cut at a row limit), the "needs action" queue, a
bounded history, and the live ETA of accepted patients recomputed from the
ambulance's latest position."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from hospital_hub import views
from hospital_hub.models import (
    Ambulance,
    Case,
    CasePublic,
    CaseStatus,
    CaseVitals,
    Hospital,
    Offer,
    OfferState,
    utcnow,
)
from hospital_hub.travel import Point, Router

WAITING = (CaseStatus.OFFERED, CaseStatus.NO_ER_AVAILABLE)
HISTORY_ROWS = 40
"""Accepted cases the board keeps below the unresolved ones (the rest: the case history)."""
RECENT_OFFERS = 50
"""Decided offers the ER console lists under its open ones."""
EXPIRING_S = 45.0
"""An open offer this close to expiring puts its case in the "needs action" queue."""


@dataclass(frozen=True)
class Eta:
    """When an ambulance should arrive, from its latest known position."""

    minutes: float
    arrives_at: datetime
    distance_km: float
    source: str
    """``estimate`` (straight line) or ``routing``."""
    from_position_at: datetime | None
    """The time of the position it was computed from (None: where the X-ray was taken)."""

    def left_min(self) -> float:
        """Minutes from now to the arrival (0 or less: arriving)."""
        return (self.arrives_at - utcnow()).total_seconds() / 60


def live_eta(session: Session, case: Case, hospital: Hospital, router: Router) -> Eta:
    """The drive from the ambulance's latest position (else where the X-ray was
    taken) to ``hospital``: the arrival is counted from that position's time,
    and never from before the acceptance (the ambulance leaves then)."""
    ambulance = session.get(Ambulance, case.ambulance_id)
    origin, at = Point(case.lat, case.lon), case.captured_at
    position_at = None
    if (ambulance is not None and ambulance.lat is not None and ambulance.lon is not None
            and ambulance.position_at is not None and ambulance.position_at > case.captured_at):
        origin, at = Point(ambulance.lat, ambulance.lon), ambulance.position_at
        position_at = ambulance.position_at
    travel = router.travel(origin, [Point(hospital.lat, hospital.lon)], case.triage_level)[0]
    start = max(at, case.decided_at or at)
    return Eta(minutes=travel.eta_min, arrives_at=start + timedelta(minutes=travel.eta_min),
               distance_km=travel.distance_km, source=travel.source, from_position_at=position_at)


def essentials(session: Session, case: Case) -> dict[str, Any]:
    """What an ER needs at a glance: triage and the one reason that set it,
    age, sex, the latest vitals, the complaint."""
    diagnosis = views.latest_diagnosis(session, case.id)
    triage = views.triage_of(session, case, diagnosis.payload if diagnosis else {})
    vitals = session.exec(select(CaseVitals).where(CaseVitals.case_id == case.id)
                          .order_by(col(CaseVitals.taken_at).desc())).first()
    return {"reason": (triage["reasons"] or [None])[0], "vitals": vitals, "age": case.patient_age,
            "sex": case.patient_sex, "complaint": case.chief_complaint}


def _public(session: Session, case: Case) -> CasePublic:
    offers = session.exec(select(Offer).where(Offer.case_id == case.id).order_by(col(Offer.rank)))
    return CasePublic.model_validate({**case.model_dump(), "offers": [o.model_dump() for o in offers]})


def needs_action(case: CasePublic, now: datetime) -> list[str]:
    """Why dispatch must act on this case now (i18n keys): no ER, an offer
    expired or about to, triage 1-2 still waiting."""
    why = views.escalations(case)
    expiry = views.next_expiry(case)
    if (case.status == CaseStatus.OFFERED and expiry is not None
            and (expiry - now).total_seconds() <= EXPIRING_S and "esc.expired" not in why):
        why.append("esc.expiring")
    return why


def dispatch_rows(session: Session) -> dict[str, Any]:
    """The board's cases: every unresolved one (most severe first), then the
    newest accepted ones; and the "needs action" queue."""
    waiting = session.exec(select(Case).where(col(Case.status).in_(WAITING))
                           .order_by(col(Case.triage_level), col(Case.received_at))).all()
    accepted = session.exec(select(Case).where(Case.status == CaseStatus.ACCEPTED)
                            .order_by(col(Case.received_at).desc()).limit(HISTORY_ROWS)).all()
    now = utcnow()
    cases = [_public(session, c) for c in (*waiting, *accepted)]
    rows = [(c, views.next_expiry(c), needs_action(c, now)) for c in cases]
    queue = [(c, why) for c, _, why in rows if why]
    queue.sort(key=lambda item: ("esc.no_er" not in item[1], item[0].triage_level,
                                 item[0].received_at))
    return {"cases": cases, "rows": rows, "escalated": queue, "accepted_shown": len(accepted),
            "critical": any("esc.critical_waiting" in why or "esc.no_er" in why
                            for _, why in queue)}


def er_rows(session: Session, hospital: Hospital, router: Router) -> dict[str, Any]:
    """The ER console's lists: every open offer (most severe first), the
    patients on their way here with a live ETA, and the latest decided offers."""
    open_offers = session.exec(select(Offer).where(Offer.hospital_id == hospital.id,
                                                   Offer.state == OfferState.OPEN)).all()
    open_rows = [(o, c, essentials(session, c)) for o in open_offers
                 if (c := session.get(Case, o.case_id)) is not None]
    open_rows.sort(key=lambda r: (r[1].triage_level, r[0].expires_at))
    coming = session.exec(select(Case).where(Case.status == CaseStatus.ACCEPTED,
                                             Case.accepted_hospital_id == hospital.id)).all()
    arrivals = [(c, live_eta(session, c, hospital, router), essentials(session, c)) for c in coming]
    arrivals.sort(key=lambda r: r[1].arrives_at)
    closed = session.exec(select(Offer).where(Offer.hospital_id == hospital.id,
                                              Offer.state != OfferState.OPEN)
                          .order_by(col(Offer.created_at).desc())
                          .limit(RECENT_OFFERS)).all()
    return {"open_rows": open_rows, "arrivals": arrivals,
            "closed_rows": [(o, session.get(Case, o.case_id)) for o in closed],
            "critical": [(o, c) for o, c, _ in open_rows if c.triage_level <= 2],
            "case_ids": [o.case_id for o in (*open_offers, *closed)]}
