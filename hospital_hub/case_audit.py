"""The small pieces every case change uses: the row lock, the audit trail,
triage labels and what an ER's decision did."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam
from sqlmodel import Session, select

from hospital_hub.appended_rows import append
from hospital_hub.models import Case, CaseEvent, CaseStatus, utcnow

logger = logging.getLogger(__name__)

CASE_EVENTS = CaseEvent.__table__  # type: ignore[attr-defined]

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
    """Append to the case's audit trail (in the caller's transaction, written at
    its commit: :mod:`hospital_hub.appended_rows`)."""
    now = utcnow()
    case.updated_at = now
    session.add(case)
    append(session, CASE_EVENTS, {"case_id": case.id, "at": now, "kind": kind, "actor": actor,
                                  "detail": detail})


def triage_label(level: int, sent: str, case_id: str) -> str:
    """The label of ``level``; a different label sent with it is logged and not stored."""
    label = TRIAGE_LABELS[level]
    if sent.strip().lower() != label:
        logger.warning("triage label does not match its level; the level's label is stored",
                       extra={"case_id": case_id, "level": level, "label_sent": sent[:40]})
    return label


_LOCK_CASE = select(Case).where(Case.id == bindparam("case_id")).with_for_update()
"""Built once: building the statement anew for every message was a measurable
part of a case's hub CPU."""


def lock_case(session: Session, case_id: str) -> Case | None:
    """Load a case with its row locked (PostgreSQL; SQLite locks the database)."""
    return session.exec(_LOCK_CASE, params={"case_id": case_id}).first()
