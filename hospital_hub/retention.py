"""Retention: after ``retention_days`` a case keeps only its anonymous statistics.

Deleted: the full image (``CaseImage.data``) and any chunks still held, the
thumbnails, the patient's name, age, sex and complaint, the handover, the
vital signs, the patient and vitals details in the diagnosis payloads and in
the case's events, and dead letters of the case (raw messages). Kept: the case
id, ambulance, triage, AI findings, times, offers and decisions, and the
audit trail, with a ``personal_data_deleted`` event that says when.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, exists
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hospital_hub.db import session_scope
from hospital_hub.models import (
    Case,
    CaseDiagnosis,
    CaseEvent,
    CaseImage,
    CaseVitals,
    DeadLetter,
    ImageChunk,
    utcnow,
)

logger = logging.getLogger(__name__)

PURGED = "personal_data_deleted"
"""The kind of the event that marks a case as done."""
PERSONAL_EVENT_KINDS = ("patient", "vitals", "handover")
"""Case events whose details are personal data."""
PERSONAL_PAYLOAD_KEYS = ("patient", "vitals", "overlays")
"""``overlays`` are the patient's X-ray with heat maps blended over it."""


def purge_expired(engine: Engine, retention_days: float | None, now: datetime | None = None,
                  batch: int = 100) -> int:
    """Delete the images and personal data of up to ``batch`` cases received
    more than ``retention_days`` ago (None: keep everything).

    Returns:
        How many cases were purged; call again while it returns ``batch``.
    """
    if retention_days is None:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    done = exists().where(CaseEvent.case_id == Case.id, CaseEvent.kind == PURGED)
    with session_scope(engine) as session:
        cases = session.exec(select(Case).where(col(Case.received_at) < cutoff, ~done)
                             .order_by(col(Case.received_at)).limit(batch)).all()
        if not cases:
            return 0
        ids = [c.id for c in cases]
        for case in cases:
            case.patient_name = case.patient_age = case.patient_sex = None
            case.chief_complaint = None
            case.handover = None
            session.add(case)
            session.add(CaseEvent(case_id=case.id, kind=PURGED, actor="retention",
                                  detail={"retention_days": retention_days}))
        image_ids = select(CaseImage.id).where(col(CaseImage.case_id).in_(ids))
        session.exec(delete(ImageChunk).where(col(ImageChunk.image_id).in_(image_ids)))  # type: ignore[call-overload]
        for image in session.exec(select(CaseImage).where(col(CaseImage.case_id).in_(ids))).all():
            image.data = None
            session.add(image)
        for diagnosis in session.exec(select(CaseDiagnosis)
                                      .where(col(CaseDiagnosis.case_id).in_(ids))).all():
            payload = {k: v for k, v in diagnosis.payload.items() if k not in PERSONAL_PAYLOAD_KEYS}
            if isinstance(payload.get("image"), dict):
                payload["image"] = {k: v for k, v in payload["image"].items()
                                    if k not in ("source", "thumbnail_jpeg")}
            diagnosis.payload, diagnosis.thumbnail_jpeg = payload, b""
            session.add(diagnosis)
        session.exec(delete(CaseVitals).where(col(CaseVitals.case_id).in_(ids)))  # type: ignore[call-overload]
        session.exec(delete(DeadLetter).where(col(DeadLetter.case_id).in_(ids)))  # type: ignore[call-overload]
        for event in session.exec(select(CaseEvent).where(
                col(CaseEvent.case_id).in_(ids),
                col(CaseEvent.kind).in_(PERSONAL_EVENT_KINDS))).all():
            event.detail = {}
            session.add(event)
    logger.info("personal data deleted", extra={"cases": len(ids),
                                                "retention_days": retention_days})
    return len(ids)
