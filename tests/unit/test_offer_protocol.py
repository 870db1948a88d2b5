"""Every transition of the offer protocol, its messages and the case record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from hospital_hub.models import CaseDiagnosis, CaseEvent, CaseStatus, CaseVitals, OfferState
from hospital_hub.records import case_record
from shared import topics
from shared.errors import CaseError
from shared.messages import (
    CapacityV1,
    CaseUpdateV1,
    Envelope,
    Patient,
    Position,
    PositionV1,
    Vitals,
    encode,
)
from tests import samples
from tests.hub_world import World

CASE = samples.CASE_ID


def _open(world: World) -> list[str]:
    return [o.hospital_id for o in world.offers() if o.state == OfferState.OPEN]


def _statuses(world: World) -> list[str]:
    return [p.state for _, p in world.published(topics.CASE_STATUS)]


def _update(world: World, **fields) -> Envelope:  # type: ignore[no-untyped-def, type-arg]
    return world.edge.send(topics.CASE_UPDATE, CaseUpdateV1(ambulance_id="amb-1", **fields),
                           case_id=CASE, ambulance_id="amb-1")


def _events(world: World) -> list[str]:
    with Session(world.hub.engine) as session:
        return [e.kind for e in session.exec(select(CaseEvent).order_by(CaseEvent.id)).all()]


def test_a_decline_brings_in_the_next_candidate(world: World) -> None:
    world.send_case()
    first = _open(world)
    world.answer(first[0], "decline")
    now_open = _open(world)
    assert len(now_open) == 3 and first[0] not in now_open
    assert set(first[1:]) < set(now_open)
    assert [o.rank for o in world.offers()] == [1, 2, 3, 4]
    assert _statuses(world) == ["offered", "offered"]
    assert "declined" in world.published(topics.CASE_STATUS)[-1][1].message


def test_a_decline_needs_a_reason(world: World) -> None:
    world.send_case()
    with pytest.raises(CaseError, match="reason"):
        world.hub.cases.decide(CASE, _open(world)[0], "decline", decided_by="x", reason=" ")


def test_a_late_accept_hears_already_placed(world: World) -> None:
    world.send_case()
    winner, loser, _ = _open(world)
    world.answer(winner, "accept")
    result = world.hub.cases.decide(CASE, loser, "accept", decided_by="Dr Late")
    assert result.outcome == "already_placed" and result.placed_at == winner
    told = [p for _, p in world.published(topics.ER_OFFER) if p.hospital_id == loser]
    assert told[-1].state == "withdrawn"


def test_cancel_releases_the_accepted_er_and_closes_the_case(world: World) -> None:
    world.send_case()
    winner = _open(world)[0]
    world.answer(winner, "accept")
    _update(world, action="cancel", reason="patient refused transport")
    case = world.case()
    assert case is not None and case.status == CaseStatus.CANCELLED
    told = [p for _, p in world.published(topics.ER_OFFER) if p.hospital_id == winner]
    assert told[-1].state == "withdrawn" and "no longer coming" in told[-1].summary
    assert _statuses(world)[-1] == "cancelled"
    with pytest.raises(CaseError, match="cancelled"):
        world.hub.cases.update_case(CASE, CaseUpdateV1(ambulance_id="amb-1", action="divert",
                                                       reason="x"))


def test_divert_re_offers_from_where_the_ambulance_is_now(world: World) -> None:
    world.send_case()  # near downtown Boston
    winner = _open(world)[0]
    world.answer(winner, "accept")
    later = datetime.now(UTC)
    world.edge.send(topics.AMBULANCE_POSITION,
                    PositionV1(position=Position(lat=42.3748, lon=-71.1300)),  # Cambridge
                    ambulance_id="amb-1")
    assert later > samples.T0
    _update(world, action="divert", reason="patient deteriorating")
    case = world.case()
    assert case is not None and case.status == CaseStatus.OFFERED
    assert case.accepted_hospital_id is None
    reoffered = {o.hospital_id: o for o in world.offers() if o.state == OfferState.OPEN}
    assert winner not in reoffered and len(reoffered) == 3
    # Travel is now measured from Cambridge: St Elizabeth's is close and capable
    # (the Cambridge hospitals lack the chest drain a pneumothorax needs).
    from hospital_hub.travel import Point, estimate

    expected = estimate(Point(42.3748, -71.1300), Point(42.3497, -71.1478), triage_level=1)
    assert reoffered["bos-stelizabeth"].eta_min == pytest.approx(expected.eta_min)
    told = [p for _, p in world.published(topics.ER_OFFER) if p.hospital_id == winner]
    assert "diverted" in told[-1].summary


def test_when_everyone_declines_dispatch_is_alerted(world: World) -> None:
    world.send_case()
    while open_ := _open(world):
        for hospital in open_:
            world.answer(hospital, "decline")
    alerts = world.published(topics.DISPATCH_ALERT)
    assert len(alerts) == 1 and alerts[0][1].kind == "no_er_available"
    assert [d.payload.status for d in world.decisions] == ["no_er_available"]
    assert _statuses(world)[-1] == "no_er_available"


def test_patient_vitals_and_handover_are_recorded_once(world: World) -> None:
    world.send_case()
    _update(world, action="patient", patient=Patient(name="Jane Roe", age_years=40))
    vitals = _update(world, action="vitals", vitals=Vitals(taken_at=datetime.now(UTC),
                                                           spo2_pct=91, resp_rate=24))
    world.edge.communicator.publish(
        topics.CASE_UPDATE.topic(ambulance_id="amb-1", case_id=CASE), encode(vitals))
    _update(world, action="handover", handover={"A": "40", "T": "10:02", "M": "dyspnoea"})
    record = case_record(Session(world.hub.engine), CASE)
    assert record["patient"]["name"] == "Jane Roe"
    assert record["patient"]["estimated_age"] == 40
    assert record["patient"]["chief_complaint"] == "sudden dyspnoea"  # from the diagnosis
    with Session(world.hub.engine) as session:
        assert len(session.exec(select(CaseVitals)).all()) == 2  # diagnosis + one update
    assert record["handover"]["M"] == "dyspnoea"
    assert record["notice"] == "AI result, not for clinical use"
    assert [e["kind"] for e in record["events"]][:4] == ["triage", "created", "offered",
                                                         "offered"]


def test_a_further_xray_is_added_to_the_case_without_new_offers(world: World) -> None:
    world.send_case()
    second = world.send_case()
    world.edge.communicator.publish(
        topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=CASE), encode(second))
    with Session(world.hub.engine) as session:
        assert len(session.exec(select(CaseDiagnosis)).all()) == 2
    assert len(world.offers()) == 3
    assert _events(world).count("triage") == 2


def test_an_er_that_stops_accepting_is_not_offered(world: World) -> None:
    world.er("bos-tufts").send(topics.ER_CAPACITY,
                               CapacityV1(er_beds_free=0, icu_beds_free=0, accepting=False),
                               hospital_id="bos-tufts")
    world.send_case()
    assert "bos-tufts" not in [o.hospital_id for o in world.offers()]


def test_an_ambulance_cannot_touch_another_ambulances_case(world: World) -> None:
    world.send_case()
    other = world.er("amb-2")  # any client; sends as amb-2 on amb-2's topic
    other.sender = "amb-2"
    other.send(topics.CASE_UPDATE, CaseUpdateV1(ambulance_id="amb-2", action="cancel",
                                                reason="mallory"),
               case_id=CASE, ambulance_id="amb-2")
    assert world.case().status == CaseStatus.OFFERED  # type: ignore[union-attr]


def test_the_audit_trail_tells_the_story(world: World) -> None:
    world.send_case()
    hospitals = _open(world)
    world.answer(hospitals[0], "decline")
    world.answer(hospitals[1], "accept")
    kinds = _events(world)
    assert kinds[:2] == ["triage", "created"]
    assert kinds.count("offered") == 4
    assert kinds[-2:] == ["accepted", "pacs_skipped"]  # the sample registry names no PACS


def test_an_update_that_overtakes_its_diagnosis_waits_for_it(world: World) -> None:
    """Two hub workers may take a case's diagnosis and its update at once; the
    update waits briefly for the case instead of being lost."""
    import threading
    import time

    update = Envelope.wrap(CaseUpdateV1(ambulance_id="amb-1", action="handover",
                                        handover={"M": "fall from a ladder"}),
                           sender="amb-1", case_id=CASE)
    early = threading.Thread(target=world.edge.communicator.publish, args=(
        topics.CASE_UPDATE.topic(ambulance_id="amb-1", case_id=CASE), encode(update)))
    early.start()
    time.sleep(0.2)  # the update is already being handled, and waiting
    world.send_case()
    early.join(timeout=10)
    record = case_record(Session(world.hub.engine), CASE)
    assert record["handover"] == {"M": "fall from a ladder"}
