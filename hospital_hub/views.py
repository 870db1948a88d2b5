"""What the dispatch board, the ER console and the case view show, computed
from the database (the routes and access rules are in ``api.py``)."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from hospital_hub.cases import TRIAGE_LABELS
from hospital_hub.models import (
    Ambulance,
    Case,
    CaseDiagnosis,
    CaseEvent,
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


def latest_diagnosis(session: Session, case_id: str) -> CaseDiagnosis | None:
    """The case's most recent diagnosis, if any."""
    return session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case_id)
                        .order_by(col(CaseDiagnosis.id).desc())).first()


def overlay_url(case_id: str, finding: str, diagnosis_id: int | None) -> str:
    """Where the browser gets one finding's heat-map overlay of a diagnosis."""
    query = f"?diagnosis={diagnosis_id}" if diagnosis_id is not None else ""
    return f"/api/cases/{case_id}/overlays/{finding}.jpg{query}"


def _jpeg(text: object) -> bytes | None:
    """Overlay bytes from a stored payload (pydantic writes bytes as base64
    in JSON, URL-safe or standard); None unless they are a JPEG."""
    if not isinstance(text, str) or not text:
        return None
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4),
                                validate=True)
    except (ValueError, binascii.Error):
        return None
    return data if data.startswith(b"\xff\xd8") else None


def overlay_jpeg(payload: dict[str, Any], finding: str) -> bytes | None:
    """One finding's overlay JPEG from a stored diagnosis payload, or None."""
    for item in payload.get("overlays") or []:
        if isinstance(item, dict) and item.get("finding") == finding:
            return _jpeg(item.get("jpeg"))
    return None


def without_overlay_bytes(case_id: str, payload: dict[str, Any],
                          diagnosis_id: int | None) -> dict[str, Any]:
    """The payload with each overlay's JPEG replaced by its URL (for JSON exports)."""
    overlays = payload.get("overlays")
    if not overlays:
        return payload
    return {**payload, "overlays": [
        {**{k: v for k, v in item.items() if k != "jpeg"},
         "url": overlay_url(case_id, str(item.get("finding")), diagnosis_id)}
        for item in overlays if isinstance(item, dict)]}


SOURCES = ("heatmap", "detector")
"""What may draw a region; anything else is shown as "source not given"."""


def _percent(value: object) -> float:
    return round(min(1.0, max(0.0, float(value))) * 100, 2)  # type: ignore[arg-type]


def _regions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The diagnosis's boxes with CSS percentages for drawing them over the image."""
    regions = []
    for r in payload.get("regions", []):
        left, top = _percent(r["x1"]), _percent(r["y1"])
        regions.append({**r, "source": r.get("source") if r.get("source") in SOURCES else None,
                        "left": left, "top": top,
                        "width": round(_percent(r["x2"]) - left, 2),
                        "height": round(_percent(r["y2"]) - top, 2)})
    return regions


def triage_of(session: Session, case: Case, payload: dict[str, Any]) -> dict[str, Any]:
    """The current triage and its reasons: the latest ``triage`` event (from a
    diagnosis, or re-assessed by the ambulance with new vitals), else the diagnosis's."""
    events = session.exec(select(CaseEvent).where(
        CaseEvent.case_id == case.id, col(CaseEvent.kind).in_(("triage", "vitals")))
        .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
    latest, reassessed = None, False
    for before, event in zip([None, *events], events, strict=False):
        if event.kind == "triage":
            # A re-assessment follows its vitals event; a diagnosis's triage
            # event names whether the model was a placeholder, an update's does not.
            latest = event
            reassessed = (before is not None and before.kind == "vitals"
                          and "placeholder" not in event.detail)
    from_payload = payload.get("triage", {})
    image_only = not payload.get("vitals")
    if latest is None:
        return {"level": case.triage_level, "label": TRIAGE_LABELS[case.triage_level],
                "reasons": from_payload.get("reasons", []), "reassessed": False, "at": None,
                "image_only": image_only}
    level = latest.detail.get("level", case.triage_level)
    return {"level": level, "label": TRIAGE_LABELS.get(level, case.triage_label),
            "reasons": latest.detail.get("reasons", []), "reassessed": reassessed,
            "at": latest.at, "image_only": image_only and not reassessed}


def case_details(session: Session, case: Case) -> dict[str, Any]:
    """The case view's data: latest diagnosis (findings, regions, heat maps,
    model), current triage, vitals, image state, ambulance."""
    diagnosis = latest_diagnosis(session, case.id)
    payload: dict[str, Any] = diagnosis.payload if diagnosis else {}
    diagnosis_id = diagnosis.id if diagnosis else None
    findings = sorted(
        ({"finding": f["finding"], "probability": float(f["probability"]),
          "threshold": float(f["threshold"]),
          "sensitivity": f.get("sensitivity"), "specificity": f.get("specificity"),
          "suspected": float(f["probability"]) >= float(f["threshold"]),
          "positive": float(f["probability"]) >= float(f["threshold"])}
         for f in payload.get("findings", [])),
        key=lambda f: -f["probability"])
    scores = {f["finding"]: f for f in findings}
    heatmaps = [{"finding": o["finding"], "url": overlay_url(case.id, o["finding"], diagnosis_id),
                 "peak_x": _percent(o.get("peak_x", 0)), "peak_y": _percent(o.get("peak_y", 0)),
                 **{k: v for k, v in scores.get(o["finding"], {}).items() if k != "finding"}}
                for o in payload.get("overlays") or [] if _jpeg(o.get("jpeg")) is not None]
    model = dict(payload.get("model", {}))
    model["short_sha"] = (model.get("sha256") or "")[:12]
    image = payload.get("image", {})
    vitals = session.exec(select(CaseVitals).where(CaseVitals.case_id == case.id)
                          .order_by(col(CaseVitals.taken_at))).all()
    full = session.exec(select(CaseImage.id).where(CaseImage.case_id == case.id,
                                                   col(CaseImage.complete))).first()
    offers = session.exec(select(Offer).where(Offer.case_id == case.id)
                          .order_by(col(Offer.rank))).all()
    triage = triage_of(session, case, payload)
    return {
        "findings": findings,
        "regions": _regions(payload),
        "triage": triage,
        "reasons": triage["reasons"],
        "model": model,
        "aspect": f"{image.get('width') or 1} / {image.get('height') or 1}",
        "vitals": vitals,
        "has_full_image": full is not None,
        "ambulance": session.get(Ambulance, case.ambulance_id),
        "offers": offers,
        "heatmaps": heatmaps,
        "diagnosis_id": diagnosis_id,
    }
