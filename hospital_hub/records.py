"""Case records: search with filters, the full record as JSON, and as PDF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fpdf import FPDF
from sqlalchemy import String, cast, func, or_
from sqlmodel import Session, col, select

from hospital_hub.models import (
    Case,
    CaseDiagnosis,
    CaseEvent,
    CaseStatus,
    CaseVitals,
    Hospital,
    Offer,
)
from hospital_hub.views import without_overlay_bytes
from shared.errors import NotFound
from shared.findings import Finding
from shared.notice import AI_NOTICE


@dataclass(frozen=True)
class CaseFilter:
    """Filters for the case history; every one optional."""

    date_from: datetime | None = None
    date_to: datetime | None = None
    hospital_id: str | None = None
    """Cases offered to, or accepted by, this hospital."""
    ambulance_id: str | None = None
    severity: int | None = None
    """Triage level this severe or more (1 is the most severe)."""
    finding: Finding | None = None
    """Cases whose latest diagnosis has this finding positive or in its top 3."""
    status: CaseStatus | None = None


def search_cases(session: Session, where: CaseFilter, limit: int = 50,
                 offset: int = 0) -> tuple[list[Case], int]:
    """Matching cases, newest first, and how many match in all."""
    query = select(Case)
    if where.date_from:
        query = query.where(col(Case.received_at) >= where.date_from)
    if where.date_to:
        query = query.where(col(Case.received_at) <= where.date_to)
    if where.ambulance_id:
        query = query.where(Case.ambulance_id == where.ambulance_id)
    if where.status:
        query = query.where(Case.status == where.status)
    if where.severity:
        query = query.where(col(Case.triage_level) <= where.severity)
    if where.hospital_id:
        offered = select(Offer.case_id).where(Offer.hospital_id == where.hospital_id)
        query = query.where(col(Case.id).in_(offered))
    if where.finding:
        pattern = f'%"{where.finding.value}"%'
        query = query.where(or_(cast(Case.positive_findings, String).like(pattern),
                                cast(Case.top3, String).like(pattern)))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(Case.received_at).desc(), col(Case.id))
                        .offset(offset).limit(limit)).all()
    return list(rows), int(total)


def case_record(session: Session, case_id: str) -> dict[str, Any]:
    """Everything the hub holds on a case, as JSON-ready data.

    Raises:
        NotFound: unknown case.
    """
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    names = {h.id: h.name for h in session.exec(select(Hospital)).all()}
    diagnoses = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case_id)
                             .order_by(col(CaseDiagnosis.received_at))).all()
    vitals = session.exec(select(CaseVitals).where(CaseVitals.case_id == case_id)
                          .order_by(col(CaseVitals.taken_at))).all()
    offers = session.exec(select(Offer).where(Offer.case_id == case_id)
                          .order_by(col(Offer.rank))).all()
    events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id)
                          .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
    return {
        "notice": AI_NOTICE,
        "case": case.model_dump(mode="json"),
        "patient": {"name": case.patient_name or "unknown", "estimated_age": case.patient_age,
                    "sex": case.patient_sex, "chief_complaint": case.chief_complaint},
        "accepted_hospital": names.get(case.accepted_hospital_id or ""),
        # Heat-map overlays are images: the record names their URL instead of
        # carrying them (GET /api/cases/{id}/overlays/{finding}.jpg?diagnosis={id}).
        "diagnoses": [{**d.model_dump(mode="json", exclude={"thumbnail_jpeg", "payload"}),
                       "payload": without_overlay_bytes(case_id, d.payload, d.id)}
                      for d in diagnoses],
        "triage_history": [{"at": e.at.isoformat(), **e.detail} for e in events
                           if e.kind == "triage"],
        "vitals": [v.model_dump(mode="json", exclude={"id", "case_id"}) for v in vitals],
        "offers": [{**o.model_dump(mode="json", exclude={"id"}),
                    "hospital_name": names.get(o.hospital_id)} for o in offers],
        "handover": case.handover,
        "events": [{"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor, **e.detail}
                   for e in events],
    }


def _latin1(text: object) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def case_pdf(record: dict[str, Any]) -> bytes:
    """A printable PDF of :func:`case_record`'s output."""
    case = record["case"]
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def heading(text: str) -> None:
        pdf.set_font("helvetica", "B", 12)
        pdf.cell(0, 8, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=9)

    def line(text: str) -> None:
        pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(f"goldenhour case {case['id']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(163, 0, 11)
    pdf.set_font("helvetica", "B", 11)
    pdf.cell(0, 7, _latin1(f"{record['notice']}."), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("helvetica", size=9)
    line(f"Status: {case['status']}   Ambulance: {case['ambulance_id']}   "
         f"Received: {case['received_at']}")
    if record["accepted_hospital"]:
        line(f"Accepted by: {record['accepted_hospital']}")
    patient = record["patient"]
    heading("Patient")
    line(f"Name: {patient['name']}   Estimated age: {patient['estimated_age'] or 'unknown'}   "
         f"Sex: {patient['sex'] or 'unknown'}")
    line(f"Chief complaint: {patient['chief_complaint'] or 'not recorded'}")
    heading("Triage history")
    for entry in record["triage_history"]:
        line(f"{entry['at']}: level {entry['level']} ({entry['label']}); "
             f"{'; '.join(entry.get('reasons', []))}")
    heading("AI diagnoses")
    for diagnosis in record["diagnoses"]:
        payload = diagnosis["payload"]
        suspected = [s["finding"] for s in payload["findings"]
                     if s["probability"] >= s["threshold"]]
        placeholder = " (PLACEHOLDER, not a diagnosis)" if diagnosis["placeholder_model"] else ""
        sha = f" sha256 {diagnosis['model_sha256'][:12]}" if diagnosis.get("model_sha256") else ""
        line(f"{diagnosis['received_at']}: model {diagnosis['model_name']} "
             f"{diagnosis['model_version']}{sha}{placeholder}; top 3: {', '.join(payload['top3'])}; "
             f"suspected: {', '.join(suspected) or 'none'}")
        for region in payload.get("regions", []):
            source = {"heatmap": "heat map", "detector": "detector"}.get(
                region.get("source") or "", "source not given")
            line(f"  AI box: {region['finding']} {region['score']:.2f} ({source}) at "
                 f"x {region['x1']:.2f}-{region['x2']:.2f}, y {region['y1']:.2f}-{region['y2']:.2f}")
        heat = [o.get("finding") for o in payload.get("overlays") or []]
        if heat:
            line(f"  AI heat maps (where the model's evidence is, not a diagnosis): "
                 f"{', '.join(map(str, heat))}")
    heading("Vital signs")
    for vitals in record["vitals"] or [{"taken_at": "none recorded"}]:
        line(", ".join(f"{k}={v}" for k, v in vitals.items() if v is not None))
    heading("Offers and decisions")
    for offer in record["offers"]:
        line(f"{offer['rank']}. {offer['hospital_name']}: {offer['state']}, "
             f"ETA {offer['eta_min']:.0f} min"
             + (f", by {offer['decided_by']}" if offer["decided_by"] else "")
             + (f" ({offer['reason']})" if offer["reason"] else ""))
    heading("Handover")
    for key, value in (record["handover"] or {"-": "none recorded"}).items():
        line(f"{key}: {value}")
    heading("Audit trail")
    for event in record["events"]:
        detail = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("at", "kind", "actor"))
        line(f"{event['at']} {event['kind']} by {event['actor']}" + (f": {detail}" if detail else ""))
    return bytes(pdf.output())
