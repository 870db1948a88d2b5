"""What the dispatch board, the ER console and the case view show, computed
from the database (the routes and access rules are in ``api.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from hospital_hub.models import (
    Ambulance,
    Case,
    CaseDiagnosis,
    CaseImage,
    CasePublic,
    CaseStatus,
    CaseVitals,
    HospitalPublic,
    Offer,
    OfferState,
)

LABEL_ROOM = 100
"""Pixels kept free right of the rightmost marker for its label."""
ACTIVE = (CaseStatus.OFFERED, CaseStatus.NO_ER_AVAILABLE, CaseStatus.ACCEPTED)


def next_expiry(case: CasePublic) -> datetime | None:
    """When the case's next open offer expires, if any is open."""
    times = [o.expires_at for o in case.offers if o.state == OfferState.OPEN]
    return min(times) if times else None


def escalations(case: CasePublic) -> list[str]:
    """Why dispatch should look at this case now (i18n keys)."""
    why = []
    if case.status == CaseStatus.NO_ER_AVAILABLE:
        why.append("esc.no_er")
    if case.status == CaseStatus.OFFERED and any(o.state == OfferState.EXPIRED for o in case.offers):
        why.append("esc.expired")
    if case.status in (CaseStatus.OFFERED, CaseStatus.NO_ER_AVAILABLE) and case.triage_level <= 2:
        why.append("esc.critical_waiting")
    return why


@dataclass(frozen=True)
class Marker:
    """One point on the board's map."""

    kind: str
    """``er`` or ``ambulance``."""
    id: str
    label: str
    x: float
    y: float
    colour: str
    title: str


def er_colour(hospital: HospitalPublic) -> str:
    """Green: accepting with free beds; amber: free beds unknown or none; red: not accepting."""
    if not hospital.accepting:
        return "#a3000b"
    if hospital.er_beds_free and not hospital.capacity_stale:
        return "#1f7a35"
    return "#c77700"


def map_markers(hospitals: list[HospitalPublic], ambulances: list[Ambulance],
                cases: list[CasePublic], width: float = 640, height: float = 400,
                pad: float = 36) -> list[Marker]:
    """ERs and ambulances in an equirectangular projection fitted to their
    bounding box (no tiles: it works without the internet). An ambulance with
    no reported position is drawn where its latest case was captured."""
    case_at = {c.ambulance_id: (c.lat, c.lon) for c in reversed(cases)}
    points: list[tuple[str, str, str, float, float, str, str]] = []
    for h in hospitals:
        beds = "?" if h.er_beds_free is None else str(h.er_beds_free)
        points.append(("er", h.id, f"{h.id} {beds}/{h.er_beds}", h.lat, h.lon, er_colour(h), h.name))
    for a in ambulances:
        where = (a.lat, a.lon) if a.lat is not None and a.lon is not None else case_at.get(a.id)
        if where is not None:
            points.append(("ambulance", a.id, a.id, where[0], where[1],
                           "#1d4ed8" if a.online else "#6b6f75", a.id))
    if not points:
        return []
    lats, lons = [p[3] for p in points], [p[4] for p in points]
    shrink = math.cos(math.radians((min(lats) + max(lats)) / 2))
    span_x = max((max(lons) - min(lons)) * shrink, 1e-4)
    span_y = max(max(lats) - min(lats), 1e-4)
    usable_x = width - 2 * pad - LABEL_ROOM  # labels are drawn to the right of markers
    scale = min(usable_x / span_x, (height - 2 * pad) / span_y)
    off_x = pad + (usable_x - span_x * scale) / 2
    off_y = (height - span_y * scale) / 2
    return [Marker(kind, ident, label, round(off_x + (lon - min(lons)) * shrink * scale, 1),
                   round(off_y + (max(lats) - lat) * scale, 1), colour, title)
            for kind, ident, label, lat, lon, colour, title in points]


def case_details(session: Session, case: Case) -> dict[str, Any]:
    """The case view's data: latest diagnosis, vitals, image state, ambulance."""
    diagnosis = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case.id)
                             .order_by(col(CaseDiagnosis.id).desc())).first()
    payload: dict[str, Any] = diagnosis.payload if diagnosis else {}
    findings = sorted(
        ({"finding": f["finding"], "probability": float(f["probability"]),
          "threshold": float(f["threshold"]),
          "positive": float(f["probability"]) >= float(f["threshold"])}
         for f in payload.get("findings", [])),
        key=lambda f: -f["probability"])
    vitals = session.exec(select(CaseVitals).where(CaseVitals.case_id == case.id)
                          .order_by(col(CaseVitals.taken_at))).all()
    image = session.exec(select(CaseImage.id).where(CaseImage.case_id == case.id,
                                                    col(CaseImage.complete))).first()
    offers = session.exec(select(Offer).where(Offer.case_id == case.id)
                          .order_by(col(Offer.rank))).all()
    return {
        "findings": findings,
        "regions": payload.get("regions", []),
        "reasons": payload.get("triage", {}).get("reasons", []),
        "model": payload.get("model", {}),
        "vitals": vitals,
        "has_full_image": image is not None,
        "ambulance": session.get(Ambulance, case.ambulance_id),
        "offers": offers,
        "heatmaps": [],
    }
