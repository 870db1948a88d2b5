"""Personal data: deleted after the retention (statistics kept), and never
written to a log line, over the in-memory broker and a real SQLite file."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session, select

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub.api import create_app
from hospital_hub.auth import create_user
from hospital_hub.models import (
    Case,
    CaseDiagnosis,
    CaseEvent,
    CaseImage,
    CaseVitals,
    DeadLetter,
    ImageChunk,
    Offer,
    UserCreate,
    utcnow,
)
from hospital_hub.retention import PURGED, purge_expired
from shared import topics
from shared.logs import JsonFormatter, KeyValueFormatter
from shared.messages import CaseUpdateV1, Patient
from shared.mqtt import InMemoryCommunicator
from tests import samples
from tests.hub_world import World
from tests.images import chest_like
from tests.services import wait_until

NAME = "Zebulon Quixote-Marchbanks"
COMPLAINT = "crushing xylophone pain"
HANDOVER = "handover-text-7c1f: found collapsed at the bus stop"


def _personal_case(world: World, case_id: str = samples.CASE_ID) -> None:
    """A case with a name, a complaint, vitals, a handover, an image and a dead letter."""
    world.send_case(case_id)
    for update in (CaseUpdateV1(ambulance_id="amb-1", action="patient",
                                patient=Patient(name=NAME, chief_complaint=COMPLAINT)),
                   CaseUpdateV1(ambulance_id="amb-1", action="vitals", vitals=samples.VITALS),
                   CaseUpdateV1(ambulance_id="amb-1", action="handover",
                                handover={"S": HANDOVER})):
        world.edge.send(topics.CASE_UPDATE, update, case_id=case_id, ambulance_id="amb-1")
    with Session(world.hub.engine) as session:
        image = CaseImage(case_id=case_id, image_sha256="cd" * 32, media_type="image/png",
                          total_bytes=4, chunk_count=2, received_chunks=2, complete=True,
                          data=b"\x89PNG")
        session.add(image)
        session.flush()
        assert image.id is not None
        session.add(ImageChunk(image_id=image.id, index=0, data=b"\x89P"))
        session.add(DeadLetter(topic="update", message_id="x", case_id=case_id, error="test",
                               data=NAME.encode()))
        session.commit()


def test_retention_deletes_images_and_personal_data_and_keeps_statistics(world: World) -> None:
    _personal_case(world)
    world.send_case("20261125T120500Z-0fresh00")
    engine = world.hub.engine
    assert purge_expired(engine, 30) == 0  # nothing is 30 days old yet
    assert purge_expired(engine, None, now=utcnow() + timedelta(days=999)) == 0
    later = utcnow() + timedelta(days=31)
    with Session(engine) as session:
        fresh = session.get(Case, "20261125T120500Z-0fresh00")
        assert fresh is not None
        fresh.received_at = later - timedelta(days=1)  # received 30 days after the first
        session.add(fresh)
        session.commit()
    assert purge_expired(engine, 30, now=later) == 1
    assert purge_expired(engine, 30, now=later) == 0  # done once

    with Session(engine) as session:
        case = session.get(Case, samples.CASE_ID)
        assert case is not None
        assert (case.patient_name, case.patient_age, case.patient_sex, case.chief_complaint,
                case.handover) == (None, None, None, None, None)
        assert case.triage_level == 1 and case.status == "offered" and case.top3
        assert len(session.exec(select(Offer).where(Offer.case_id == case.id)).all()) == 3
        diagnosis = session.exec(select(CaseDiagnosis)
                                 .where(CaseDiagnosis.case_id == case.id)).one()
        assert diagnosis.thumbnail_jpeg == b""
        assert "patient" not in diagnosis.payload and "vitals" not in diagnosis.payload
        assert diagnosis.payload["triage"]["level"] == 1 and diagnosis.payload["findings"]
        assert session.exec(select(CaseVitals).where(CaseVitals.case_id == case.id)).all() == []
        assert session.exec(select(ImageChunk)).all() == []
        image = session.exec(select(CaseImage).where(CaseImage.case_id == case.id)).one()
        assert image.data is None and image.image_sha256 == "cd" * 32
        assert session.exec(select(DeadLetter)).all() == []
        events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
        assert [e.kind for e in events].count(PURGED) == 1
        everything = " ".join(str(e.detail) for e in events) + str(diagnosis.payload)
        assert NAME not in everything and COMPLAINT not in everything
        assert "sudden dyspnoea" not in everything  # the complaint from the diagnosis

        untouched = session.get(Case, "20261125T120500Z-0fresh00")
        assert untouched is not None and untouched.chief_complaint == "sudden dyspnoea"
        assert session.exec(select(CaseVitals).where(
            CaseVitals.case_id == untouched.id)).all() != []


def test_housekeeping_runs_the_retention(world: World) -> None:
    _personal_case(world)
    world.hub.settings = world.hub.settings.model_copy(update={"retention_days": 1e-5})
    time.sleep(1.0)  # older than 0.86 s
    world.hub.tick()
    case = world.case()
    assert case is not None and case.patient_name is None and case.handover is None


def test_no_patient_data_in_any_log_record(world: World, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A whole case with a distinctive name through the edge agent, the hub,
    its API and pages; not one log record may carry the personal data."""
    caplog.set_level(logging.DEBUG)
    Image.fromarray(chest_like(256)).save(tmp_path / "xray.png")
    edge = EdgeAgent(load_edge_settings(ambulance_id="amb-1", lat=42.3631, lon=-71.0686,
                                        state_dir=tmp_path / "edge"),
                     communicator=InMemoryCommunicator(world.broker), announce=False)
    edge.start()
    try:
        record = edge.submit(tmp_path / "xray.png",
                             patient=Patient(name=NAME, age_years=41, chief_complaint=COMPLAINT))
        assert wait_until(lambda: world.case(record.case_id) is not None)
        case_id = record.case_id
        edge.update(case_id, "handover", handover={"S": HANDOVER})
        edge.update(case_id, "patient", patient=Patient(name=NAME + " Jr"))
        assert wait_until(lambda: (c := world.case(case_id)) is not None and c.handover)
        first, second, _ = (o.hospital_id for o in world.offers(case_id))
        world.answer(first, "decline", case_id)
        create_user(world.hub.engine, UserCreate(username="root", role="admin",
                                                 password="admin password"))
        with TestClient(create_app(world.hub, manage_runtime=False)) as client:
            client.post("/login", data={"username": "root", "password": "admin password"})
            assert NAME in client.get(f"/api/cases/{case_id}/record.json").text
            assert client.get(f"/api/cases/{case_id}/record.pdf").status_code == 200
            assert client.get(f"/er/{second}").status_code == 200
            accepted = client.post(f"/api/cases/{case_id}/offers/{second}/decision",
                                   json={"decision": "accept"})
            assert accepted.status_code == 200
            too_long = {"ambulance_id": "amb-1", "action": "patient",
                        "patient": {"name": NAME * 10}}
            assert client.post(f"/api/cases/{case_id}/updates", json=too_long).status_code == 422
        world.edge.send(topics.CASE_UPDATE, CaseUpdateV1(
            ambulance_id="amb-1", action="patient", patient=Patient(name=NAME)),
            case_id="20261125T999999Z-nosuchca", ambulance_id="amb-1")  # "message not applied"
        assert wait_until(lambda: world.decisions)
    finally:
        edge.stop()
    assert len(caplog.records) > 20
    secrets = (NAME, "Zebulon", "Marchbanks", COMPLAINT, "xylophone", "7c1f")
    for log_record in caplog.records:
        text = JsonFormatter().format(log_record) + KeyValueFormatter().format(log_record)
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{leaked} logged by {log_record.name}: {text}"

