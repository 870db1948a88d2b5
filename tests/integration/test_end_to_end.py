"""The walking skeleton over a real Mosquitto, on SQLite and PostgreSQL:
edge -> hub -> 3 offers -> one ER accepts -> the ambulance hears it."""

from __future__ import annotations

import logging
from pathlib import Path

import msgpack
import pytest
from sqlmodel import Session, func, select

from edge_agent.operators import XrayInput
from hospital_hub.models import Case, CaseDiagnosis, CaseStatus, Offer, OfferState
from shared import topics
from shared.messages import CapacityV1, Envelope, encode
from tests.integration.conftest import accept_rank
from tests.services import wait_until


def test_case_round_trip(database_url: str, make_system, xray: Path) -> None:  # type: ignore[no-untyped-def]
    system = make_system(database_url, policy=accept_rank(2))
    record = system.edge.submit(xray)
    record = system.edge.wait_for_decision(record.case_id, timeout=20)

    decision = record.decision
    assert decision is not None and decision.status == "accepted"
    logging.getLogger(__name__).info("round trip", extra={
        "ms": round(record.decision_latency_s * 1000, 1)})  # type: ignore[operator]
    with Session(system.hub.engine) as session:
        case = session.get(Case, record.case_id)
        offers = session.exec(select(Offer).where(Offer.case_id == record.case_id)
                              .order_by(Offer.rank)).all()
    assert case is not None and case.status == CaseStatus.ACCEPTED
    # The first three were offered at once; each decline brought in the next ER.
    assert [o.rank for o in offers][:3] == [1, 2, 3]
    accepted = [o for o in offers if o.state == OfferState.ACCEPTED]
    assert len(accepted) == 1 and accepted[0].rank >= 2
    assert {o.state for o in offers if o is not accepted[0]} <= {
        OfferState.DECLINED, OfferState.WITHDRAWN}
    assert decision.hospital_id == accepted[0].hospital_id == case.accepted_hospital_id
    assert decision.eta_min == pytest.approx(accepted[0].eta_min)
    # Every offered ER saw its offer over the broker.
    for offer in offers:
        assert record.case_id in system.ers[offer.hospital_id].offers
    # The crew cancels: the hub confirms, and the accepting ER hears it.
    system.edge.update(record.case_id, "cancel", reason="patient refused transport")
    assert wait_until(lambda: record.status is not None and record.status.state == "cancelled")
    accepting_er = system.ers[decision.hospital_id]
    assert wait_until(lambda: accepting_er.offers[record.case_id].state == "withdrawn")


def test_duplicates_are_stored_once(database_url: str, make_system, xray: Path) -> None:  # type: ignore[no-untyped-def]
    system = make_system(database_url, er_delay_s=30)  # ERs stay silent during this test
    diagnosis = system.edge.diagnose(XrayInput.read(xray))
    envelope = Envelope.wrap(diagnosis, sender=system.edge.ambulance_id,
                             case_id="20261125T000000Z-00000001")
    topic = topics.CASE_DIAGNOSIS.topic(ambulance_id=system.edge.ambulance_id,
                                        case_id="20261125T000000Z-00000001")
    for _ in range(3):
        system.edge.communicator.publish(topic, encode(envelope))
    follow_up = system.edge.submit(xray)  # handled after the duplicates, in order

    def stored() -> bool:
        with Session(system.hub.engine) as session:
            return session.get(Case, follow_up.case_id) is not None

    assert wait_until(stored, timeout=10)
    with Session(system.hub.engine) as session:
        assert session.exec(select(func.count()).select_from(Case)).one() == 2
        assert session.exec(select(func.count()).select_from(Offer)
                            .where(Offer.case_id == envelope.case_id)).one() == 3


def _bad_messages(spec: topics.TopicSpec, case_id: str | None) -> dict[str, bytes]:
    other = CapacityV1(er_beds_free=1, icu_beds_free=1)
    wrong_schema = encode(Envelope.wrap(other, sender="mallory", case_id=case_id))
    wire = msgpack.unpackb(wrong_schema, timestamp=3)
    wrong_version = msgpack.packb({**wire, "schema": spec.payload.SCHEMA, "version": 99},
                                  datetime=True)
    missing = msgpack.packb({**wire, "schema": spec.payload.SCHEMA, "payload": {}},
                            datetime=True)
    no_envelope = msgpack.packb({k: v for k, v in wire.items() if k != "sender"}, datetime=True)
    return {"garbage": b"\x93\x00garbage", "wrong schema": wrong_schema,
            "wrong version": wrong_version, "missing fields": missing,
            "missing envelope field": no_envelope}


def test_malformed_messages_on_every_topic_are_rejected_and_service_continues(
        make_system, tmp_path: Path, xray: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    system = make_system(f"sqlite:///{tmp_path / 'hub.db'}")
    amb = system.edge.ambulance_id
    case_id = "20261125T000000Z-0000dead"
    targets = {
        topics.CASE_DIAGNOSIS: {"ambulance_id": amb, "case_id": case_id},
        topics.ER_DECISION: {"hospital_id": "bos-mgh", "case_id": case_id},
        topics.AMBULANCE_POSITION: {"ambulance_id": amb},
        topics.AMBULANCE_STATUS: {"ambulance_id": f"{amb}-x"},
        topics.CASE_DECISION: {"ambulance_id": amb, "case_id": case_id},
        topics.ER_OFFER: {"hospital_id": "bos-mgh", "case_id": case_id},
    }
    sent = 0
    with caplog.at_level(logging.WARNING, logger="shared.mqtt.messenger"):
        for spec, ids in targets.items():
            for data in _bad_messages(spec, ids.get("case_id")).values():
                system.edge.communicator.publish(spec.topic(**ids), data)
                sent += 1

        def rejected() -> int:
            return (sum(system.hub.messenger.rejected.values())
                    + sum(system.edge.messenger.rejected.values())
                    + sum(system.ers["bos-mgh"].messenger.rejected.values()))

        assert wait_until(lambda: rejected() == sent, timeout=10), rejected()
    reasons = [r for r in caplog.records if r.getMessage() == "rejected message"]
    assert len(reasons) == sent
    assert {r.error for r in reasons} >= {"MalformedMessage", "UnsupportedVersion"}  # type: ignore[attr-defined]
    # Everyone is still working: a real case completes.
    record = system.edge.submit(xray)
    assert system.edge.wait_for_decision(record.case_id, timeout=20).decision.status == "accepted"  # type: ignore[union-attr]


def test_real_dicom_case(make_system, tmp_path: Path, data_folder: Path) -> None:  # type: ignore[no-untyped-def]
    system = make_system(f"sqlite:///{tmp_path / 'hub.db'}")
    record = system.edge.submit(data_folder / "dicom" / "siim-cxr-monochrome2.dcm")
    record = system.edge.wait_for_decision(record.case_id, timeout=20)
    assert record.decision is not None and record.decision.status == "accepted"
    with Session(system.hub.engine) as session:
        diagnosis = session.exec(select(CaseDiagnosis)
                                 .where(CaseDiagnosis.case_id == record.case_id)).one()
    assert diagnosis.thumbnail_jpeg.startswith(b"\xff\xd8")
    assert diagnosis.payload["image"]["format"] == "dicom"
    # the shipped model, with its heat maps, end to end
    assert diagnosis.payload["model"]["placeholder"] is False
    assert len(diagnosis.payload["overlays"]) == 3
