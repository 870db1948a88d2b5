"""What the crew page shows, read from the agent and its outbox.

Everything comes from the outbox's ``edge_case`` and ``edge_case_doc`` tables
(so the page survives a restart of the agent), with the agent's in-memory
records as a fallback; nothing here talks to the broker.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.agent import EdgeAgent
from shared.messages import CaseDecisionV1, CaseStatusV1, DiagnosisV1, Patient, Triage, Vitals
from shared.notice import AI_NOTICE

ATMIST_KEYS: tuple[str, ...] = ("age", "time", "mechanism", "injuries", "signs", "treatment")
"""The handover's keys, in ATMIST order."""
AI_MARK = f"[{AI_NOTICE}]"
PLACEHOLDER_MARK = "[placeholder model, not a diagnosis]"


@dataclass
class LinkView:
    """The link to the hub and what waits to go over it."""

    connected: bool
    pending_messages: int
    pending_bytes: int
    unconfirmed: list[str]


@dataclass
class CaseView:
    """One case as the crew page shows it."""

    case_id: str
    created_at: float
    triage_level: int
    state: str
    diagnosis: DiagnosisV1 | None = None
    patient: Patient | None = None
    status: CaseStatusV1 | None = None
    decision: CaseDecisionV1 | None = None
    vitals: Vitals | None = None
    handover: dict[str, str] | None = None
    triage: Triage | None = None
    """The current triage: re-assessed with the latest vitals sent, else the diagnosis's."""
    reassessed: bool = False
    """Whether :attr:`triage` comes from the crew's vitals (not the image alone)."""

    @property
    def created(self) -> str:
        """Creation time, UTC, for display."""
        return datetime.fromtimestamp(self.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def heatmaps(self) -> list[dict[str, Any]]:
        """The diagnosis's heat maps (top 3), each with its score, peak and boxes,
        positions as CSS percentages of the image."""
        if self.diagnosis is None or not self.diagnosis.overlays:
            return []
        scores = {s.finding: s for s in self.diagnosis.findings}
        shown = []
        for overlay in self.diagnosis.overlays:
            score = scores[overlay.finding]
            boxes = [{"left": _pct(r.x1), "top": _pct(r.y1), "width": _pct(r.x2 - r.x1),
                      "height": _pct(r.y2 - r.y1), "score": r.score, "source": r.source}
                     for r in self.diagnosis.regions if r.finding == overlay.finding]
            shown.append({"finding": overlay.finding.value,
                          "url": f"/cases/{self.case_id}/overlays/{overlay.finding.value}.jpg",
                          "peak_x": _pct(overlay.peak_x), "peak_y": _pct(overlay.peak_y),
                          "probability": score.probability, "threshold": score.threshold,
                          "suspected": score.suspected, "boxes": boxes})
        return shown

    @property
    def aspect(self) -> str:
        """The image's width / height, for CSS ``aspect-ratio``."""
        if self.diagnosis is None:
            return "1 / 1"
        return f"{self.diagnosis.image.width} / {self.diagnosis.image.height}"


def _pct(value: float) -> float:
    return round(min(1.0, max(0.0, value)) * 100, 2)


def link(agent: EdgeAgent) -> LinkView:
    """Whether the broker is reachable now, and the outbox's backlog."""
    count, size = agent.outbox.pending()
    return LinkView(connected=agent.communicator.connected, pending_messages=count,
                    pending_bytes=size, unconfirmed=agent.outbox.unconfirmed_cases())


def _state(row: dict[str, object], status: CaseStatusV1 | None,
           decision: CaseDecisionV1 | None, unconfirmed: set[str]) -> str:
    if status is not None:
        return status.state
    if decision is not None:
        return decision.status
    if row.get("sent_at") is None and row["case_id"] in unconfirmed:
        return "queued"
    return "sent"


def cases(agent: EdgeAgent, limit: int = 50) -> list[CaseView]:
    """Recent cases, newest first, with their state."""
    unconfirmed = set(agent.outbox.unconfirmed_cases())
    return [_view(agent, row, unconfirmed) for row in agent.outbox.cases()[:limit]]


def case(agent: EdgeAgent, case_id: str) -> CaseView | None:
    """One case made here, or None."""
    for row in agent.outbox.cases():
        if row["case_id"] == case_id:
            return _view(agent, row, set(agent.outbox.unconfirmed_cases()))
    return None


def _view(agent: EdgeAgent, row: dict[str, object], unconfirmed: set[str]) -> CaseView:
    case_id = str(row["case_id"])
    docs = agent.outbox.case_docs(case_id)
    record = agent.cases.get(case_id)
    diagnosis = (record.diagnosis if record and record.diagnosis else
                 _load(DiagnosisV1, docs.get("diagnosis")))
    status = _load(CaseStatusV1, docs.get("status")) or (record.status if record else None)
    decision = _load(CaseDecisionV1, docs.get("decision")) or (record.decision if record
                                                                 else None)
    patient = _update_field(docs, "patient", Patient) or _load(Patient, docs.get("patient"))
    reassessed = _update_field(docs, "vitals", Triage, key="triage")
    triage = reassessed or (diagnosis.triage if diagnosis else None)
    level = triage.level if triage else row["triage_level"]
    return CaseView(
        case_id=case_id, created_at=float(row["created_at"]),  # type: ignore[arg-type]
        triage_level=int(level),  # type: ignore[call-overload]
        state=_state(row, status, decision, unconfirmed), diagnosis=diagnosis,
        patient=patient, status=status, decision=decision,
        vitals=_update_field(docs, "vitals", Vitals),
        handover=(json.loads(docs["update:handover"]).get("handover")
                  if "update:handover" in docs else None),
        triage=triage, reassessed=reassessed is not None)


def _load(model: Any, text: str | None) -> Any:
    return model.model_validate_json(text) if text else None


def _update_field(docs: dict[str, str], action: str, model: Any, key: str | None = None) -> Any:
    """A field (``key``, default the action's own) of the latest update of that action."""
    text = docs.get(f"update:{action}")
    if not text:
        return None
    value = json.loads(text).get(key or action)
    return model.model_validate(value) if value else None


def overlay_jpeg(agent: EdgeAgent, case_id: str, finding: str) -> bytes | None:
    """One finding's heat-map overlay of the case's diagnosis (from memory, else
    from the outbox's stored diagnosis), or None."""
    record = agent.cases.get(case_id)
    diagnosis = record.diagnosis if record and record.diagnosis else None
    if diagnosis is None:
        diagnosis = _load(DiagnosisV1, agent.outbox.case_docs(case_id).get("diagnosis"))
    for overlay in (diagnosis.overlays or []) if diagnosis else []:
        if overlay.finding.value == finding:
            return _jpeg(overlay.jpeg)
    return None


def _jpeg(data: bytes) -> bytes | None:
    """The JPEG itself, also when a stored document kept it as base64 text."""
    if data.startswith(b"\xff\xd8"):
        return data
    try:
        text = data.decode("ascii").replace("-", "+").replace("_", "/")
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        return None
    return decoded if decoded.startswith(b"\xff\xd8") else None


def vitals_text(vitals: Vitals | None) -> str:
    """One line of vital signs, e.g. ``SpO2 94%, RR 22/min, ...``."""
    if vitals is None:
        return ""
    parts = []
    if vitals.spo2_pct is not None:
        parts.append(f"SpO2 {vitals.spo2_pct}%")
    if vitals.resp_rate is not None:
        parts.append(f"RR {vitals.resp_rate}/min")
    if vitals.heart_rate is not None:
        parts.append(f"HR {vitals.heart_rate}/min")
    if vitals.systolic_bp is not None:
        parts.append(f"SBP {vitals.systolic_bp} mmHg")
    if vitals.temperature_c is not None:
        parts.append(f"T {vitals.temperature_c:.1f} °C")
    if vitals.avpu:
        parts.append(f"AVPU {vitals.avpu}")
    if vitals.supplemental_o2 is not None:
        parts.append("on O2" if vitals.supplemental_o2 else "room air")
    taken = vitals.taken_at.astimezone(UTC).strftime("%H:%M UTC")
    return f"{', '.join(parts)} (at {taken})" if parts else ""


def ai_findings_text(diagnosis: DiagnosisV1) -> str:
    """The AI result in one line, always marked as not for clinical use."""
    scores = {s.finding: s.probability for s in diagnosis.findings}
    top = ", ".join(f"{f.value} {scores[f]:.0%}" for f in diagnosis.top3)
    suspected = ", ".join(s.finding.value for s in diagnosis.findings if s.suspected) or "none"
    marks = AI_MARK + (f" {PLACEHOLDER_MARK}" if diagnosis.model.placeholder else "")
    return (f"{marks} chest X-ray, suspected: {suspected}; top findings: {top}; "
            f"triage {diagnosis.triage.level} ({diagnosis.triage.label})")


def draft_handover(view: CaseView) -> dict[str, str]:
    """An ATMIST handover pre-filled from the patient, vitals and AI result
    (the last one sent, if any, is kept as the draft)."""
    if view.handover:
        return {key: view.handover.get(key, "") for key in ATMIST_KEYS}
    patient = view.patient or Patient()
    age = f"{patient.age_years} y (estimated)" if patient.age_years is not None else "unknown"
    if patient.sex:
        age += f", sex {patient.sex}"
    time_text = f"X-ray taken {view.created}; onset: "
    treatment = "supplemental O2" if view.vitals and view.vitals.supplemental_o2 else ""
    return {
        "age": age,
        "time": time_text,
        "mechanism": patient.chief_complaint or "",
        "injuries": ai_findings_text(view.diagnosis) if view.diagnosis else "",
        "signs": vitals_text(view.vitals),
        "treatment": treatment,
    }


def mark_ai(handover: dict[str, str], diagnosis: DiagnosisV1 | None) -> dict[str, str]:
    """Keep the AI marking on the handover: if the crew's text names an AI
    finding but lost the notice, put the notice back in front."""
    if diagnosis is None:
        return handover
    injuries = handover.get("injuries", "")
    names = [f.value for f in diagnosis.top3]
    if AI_MARK not in injuries and any(name in injuries for name in names):
        handover = {**handover, "injuries": f"{AI_MARK} {injuries}"}
    return handover
