"""The messages the hub's state changes cause, written to the outbox.

Each function adds one message inside the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import bindparam, inspect
from sqlmodel import Session, col, select

from hospital_hub.models import Case, CaseImage, Hospital, Offer, OfferState
from hospital_hub.outbox import enqueue
from shared import topics
from shared.messages import (
    CaseDecisionV1,
    CaseStatusV1,
    DispatchAlertV1,
    OfferSummary,
    OfferV1,
    Position,
)
from shared.notice import AI_NOTICE


def minutes_text(eta_min: float) -> str:
    """"about 6 min", or "under 1 min" (never "about 0 min")."""
    return "under 1 min" if eta_min < 1 else f"about {eta_min:.0f} min"


def offer_open(session: Session, sender: str, case: Case, offer: Offer, explanation: str) -> None:
    """Offer ``case`` to ``offer.hospital_id``."""
    enqueue(
        session, topics.ER_OFFER,
        OfferV1(hospital_id=offer.hospital_id, ambulance_id=case.ambulance_id, state="open",
                rank=offer.rank, distance_km=offer.distance_km, eta_min=offer.eta_min,
                expires_at=offer.expires_at, triage_level=case.triage_level,
                top3=case.top3,  # type: ignore[arg-type]
                summary=(f"Triage {case.triage_level} ({case.triage_label}); {explanation}; "
                         f"{AI_NOTICE}")[:500]),
        sender=sender, case_id=case.id, hospital_id=offer.hospital_id,
    )


def offer_withdrawn(session: Session, sender: str, case: Case, offer: Offer, why: str) -> None:
    """Tell an ER that its offer no longer stands, and why."""
    enqueue(
        session, topics.ER_OFFER,
        OfferV1(hospital_id=offer.hospital_id, ambulance_id=case.ambulance_id,
                state="withdrawn", rank=offer.rank, distance_km=offer.distance_km,
                eta_min=offer.eta_min, expires_at=offer.expires_at,
                triage_level=case.triage_level, top3=case.top3,  # type: ignore[arg-type]
                summary=why[:500]),
        sender=sender, case_id=case.id, hospital_id=offer.hospital_id,
    )


def decision_accepted(session: Session, sender: str, case: Case, offer: Offer,
                      hospital: Hospital) -> None:
    """Tell the ambulance where to go."""
    enqueue(
        session, topics.CASE_DECISION,
        CaseDecisionV1(status="accepted", hospital_id=hospital.id, hospital_name=hospital.name,
                       destination=Position(lat=hospital.lat, lon=hospital.lon),
                       distance_km=offer.distance_km, eta_min=offer.eta_min,
                       message=f"{hospital.name} accepts the patient; "
                               f"{minutes_text(offer.eta_min)}."[:500]),
        sender=sender, case_id=case.id, ambulance_id=case.ambulance_id,
    )


def no_er_available(session: Session, sender: str, case: Case, asked: int) -> None:
    """Tell the ambulance and alert dispatch that no ER took the patient."""
    text = f"No ER accepted (asked {asked}); dispatch has been alerted."
    enqueue(session, topics.CASE_DECISION,
            CaseDecisionV1(status="no_er_available", message=text),
            sender=sender, case_id=case.id, ambulance_id=case.ambulance_id)
    enqueue(session, topics.DISPATCH_ALERT,
            DispatchAlertV1(kind="no_er_available", ambulance_id=case.ambulance_id,
                            triage_level=case.triage_level,
                            message=f"Case {case.id} (triage {case.triage_level}): {text}"),
            sender=sender, case_id=case.id)


_OFFER_SUMMARIES = (select(Offer.hospital_id, Hospital.name, Offer.state, Offer.eta_min)
                    .where(Offer.case_id == bindparam("case_id"), Offer.hospital_id == Hospital.id)
                    .order_by(col(Offer.rank)))
_VERIFIED_IMAGES = select(CaseImage.image_sha256).where(
    CaseImage.case_id == bindparam("case_id"), col(CaseImage.complete).is_(True))
"""A case's status reads, built once (as the other hot statements)."""


OFFERED_NAMES = "goldenhour_offered_names"
"""``session.info`` key: the names of the ERs offered a case in this transaction
(the ranking had them; the identity map may have let them go already)."""


def _hospital_name(session: Session, hospital_id: str) -> str:
    name = session.info.get(OFFERED_NAMES, {}).get(hospital_id)
    if name is None:
        hospital = session.get(Hospital, hospital_id)
        name = hospital.name if hospital is not None else hospital_id
    return str(name)


def case_status(session: Session, sender: str, case: Case, message: str) -> None:
    """Tell the ambulance the case's state, every offer and the verified images,
    after a change. Any status also tells the ambulance that the hub has the case."""
    if inspect(case).pending:
        # A new case: its offers are all in this session (no read needed) and it
        # has no images (a chunk needs its case row).
        with session.no_autoflush:
            offers = sorted((o for o in session.new
                             if isinstance(o, Offer) and o.case_id == case.id),
                            key=lambda o: o.rank)
            rows = [(o.hospital_id, _hospital_name(session, o.hospital_id), o.state, o.eta_min)
                    for o in offers]
        images: list[str] = []
    else:
        rows = list(session.exec(_OFFER_SUMMARIES, params={"case_id": case.id}).all())
        images = list(session.exec(_VERIFIED_IMAGES, params={"case_id": case.id}).all())
    summaries = [OfferSummary(hospital_id=hospital_id, hospital_name=name,
                              state=OfferState(state).value, eta_min=eta_min)
                 for hospital_id, name, state, eta_min in rows]
    enqueue(session, topics.CASE_STATUS,
            CaseStatusV1(state=case.status.value, offers=summaries[-50:], message=message[:500],
                         images_verified=images[-20:] or None),
            sender=sender, case_id=case.id, ambulance_id=case.ambulance_id)
