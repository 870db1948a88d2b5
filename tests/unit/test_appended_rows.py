"""Rows queued on a session (audit events, outbox messages) are written at its
commit, in their order, and dropped with a rollback."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from hospital_hub.case_audit import record_event
from hospital_hub.db import make_engine, migrate, session_scope
from hospital_hub.models import Case, CaseEvent, OutboxMessage
from hospital_hub.outbox import enqueue
from shared import topics
from shared.messages import DispatchAlertV1
from tests import samples


def _new_case(case_id: str) -> Case:
    return Case(id=case_id, ambulance_id="amb-1", lat=42.3, lon=-71.1,
                captured_at=samples.diagnosis().captured_at, triage_level=2,
                triage_label="emergent", model_name="m")


def test_appended_rows_follow_the_transaction(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    alert = next(p for p in samples.all_payloads() if isinstance(p, DispatchAlertV1))
    with session_scope(engine) as session:
        case = _new_case("case-a")
        session.add(case)  # pending: the events need its row, written first at commit
        for kind in ("created", "triage", "offered"):
            record_event(session, case, kind, "hub-1")
        for case_id in ("case-a", "case-b"):
            enqueue(session, topics.DISPATCH_ALERT, alert, sender="hub-1", case_id=case_id)
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        record_event(session, session.get(Case, "case-a"), "lost", "hub-1")
        enqueue(session, topics.DISPATCH_ALERT, alert, sender="hub-1", case_id="lost")
        raise RuntimeError("rolled back")
    with Session(engine) as session:  # a session that ends without a commit writes nothing
        record_event(session, session.get(Case, "case-a"), "never", "hub-1")
    with Session(engine) as session:  # nor does a rollback leave rows for the next commit
        record_event(session, session.get(Case, "case-a"), "dropped", "hub-1")
        session.rollback()
        record_event(session, session.get(Case, "case-a"), "kept", "hub-1")
        session.commit()
    with Session(engine) as session:
        kinds = session.exec(select(CaseEvent.kind).order_by(col(CaseEvent.id))).all()
        outbox = session.exec(select(OutboxMessage.case_id).order_by(col(OutboxMessage.id))).all()
    assert kinds == ["created", "triage", "offered", "kept"]
    assert outbox == ["case-a", "case-b"]
    engine.dispose()
