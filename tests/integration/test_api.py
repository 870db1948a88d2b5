"""The hub's HTTP API, served by the real app over a real broker and database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hospital_hub.api import create_app
from hospital_hub.auth import create_user
from hospital_hub.models import UserCreate
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.messages import Envelope, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.services import wait_until


@pytest.fixture
def client(database_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[TestClient]:
    runtime = HubRuntime(load_hub_settings(hub_id=f"api-{uid}", database_url=database_url,
                                           mqtt=mqtt_settings))
    with TestClient(create_app(runtime)) as test_client:
        create_user(runtime.engine, UserCreate(username="root", role="admin",
                                               password="admin password"))
        signed_in = test_client.post("/login", data={"username": "root",
                                                     "password": "admin password"},
                                     follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        yield test_client


def _send_case(mqtt_settings: MqttSettings, uid: str) -> str:
    sender = PahoCommunicator(mqtt_settings, client_id=f"api-edge-{uid}")
    sender.start()
    case_id = f"20261125T120000Z-{uid}"
    envelope = Envelope.wrap(samples.diagnosis(ambulance_id=f"amb-{uid}"),
                             sender=f"amb-{uid}", case_id=case_id)
    sender.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=f"amb-{uid}", case_id=case_id),
                   encode(envelope))
    sender.stop()
    return case_id


def test_health_hospitals_and_404s(client: TestClient) -> None:
    """Signed in as an admin; tests/integration/test_auth.py checks the other roles."""
    health = client.get("/health").json()
    assert health["broker_connected"] is True and health["status"] == "ok"
    hospitals = client.get("/api/hospitals").json()
    assert len(hospitals) == 8 and all("SAMPLE DATA" in h["name"] for h in hospitals)
    assert client.get("/api/cases/nope").status_code == 404
    assert client.get("/er/nope").status_code == 404
    response = client.post("/api/cases/nope/offers/bos-mgh/decision",
                           json={"decision": "accept", "decided_by": "Dr X"})
    assert response.status_code == 404


def test_case_appears_and_console_decision_takes_effect(
        database_url: str, client: TestClient, mqtt_settings: MqttSettings, uid: str) -> None:
    case_id = _send_case(mqtt_settings, uid)
    assert wait_until(lambda: client.get(f"/api/cases/{case_id}").status_code == 200)
    case = client.get(f"/api/cases/{case_id}").json()
    assert case["status"] == "offered" and len(case["offers"]) == 3
    assert client.get(f"/api/cases/{case_id}/thumbnail.jpg").content.startswith(b"\xff\xd8")
    first, second = case["offers"][0]["hospital_id"], case["offers"][1]["hospital_id"]

    bad = client.post(f"/api/cases/{case_id}/offers/{first}/decision",
                      json={"decision": "maybe", "decided_by": "Dr X"})
    assert bad.status_code == 422
    no_reason = client.post(f"/api/cases/{case_id}/offers/{first}/decision",
                            json={"decision": "decline", "decided_by": "Dr X"})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    declined = client.post(f"/api/cases/{case_id}/offers/{first}/decision",
                           json={"decision": "decline", "decided_by": "Dr X", "reason": "full"})
    assert declined.json()["outcome"] == "declined"
    accepted = client.post(f"/api/cases/{case_id}/offers/{second}/decision",
                           json={"decision": "accept", "decided_by": "Dr Y"})
    assert accepted.json() == {"outcome": "accepted", "case_status": "accepted",
                               "placed_at": second}
    again = client.post(f"/api/cases/{case_id}/offers/{second}/decision",
                        json={"decision": "accept", "decided_by": "Dr Y"})
    assert again.status_code == 409
    late = client.post(f"/api/cases/{case_id}/offers/{case['offers'][2]['hospital_id']}/decision",
                       json={"decision": "accept", "decided_by": "Dr Z"})
    assert late.status_code == 409 and late.json()["detail"] == f"already placed at {second}"
    listed = client.get("/api/cases", params={"status": "accepted"}).json()
    assert [c["id"] for c in listed["items"]] == [case_id] and listed["total"] == 1
    assert client.get("/health").json()["outbox_pending"] == 0


def test_history_filters_records_capacity_and_updates(
        database_url: str, client: TestClient, mqtt_settings: MqttSettings, uid: str) -> None:
    case_id = _send_case(mqtt_settings, uid)
    assert wait_until(lambda: client.get(f"/api/cases/{case_id}").status_code == 200)
    nearest = client.get(f"/api/cases/{case_id}").json()["offers"][0]["hospital_id"]

    def ids(**params: object) -> list[str]:
        page = client.get("/api/cases", params=params).json()
        return [c["id"] for c in page["items"]]

    assert ids(ambulance_id=f"amb-{uid}") == [case_id]
    assert ids(ambulance_id="nobody") == []
    assert ids(finding="Pneumothorax", severity=1) == [case_id]
    assert ids(finding="Hernia") == []  # the sample's Hernia score is below its threshold
    assert ids(hospital_id=nearest) == [case_id]
    assert ids(date_from="2099-01-01T00:00:00Z") == []
    assert ids(status="offered", limit=1, offset=1) == []
    assert client.get("/api/cases", params={"finding": "Nonsense"}).status_code == 422
    assert client.get("/api/cases", params={"limit": 0}).status_code == 422

    updated = client.post(f"/api/cases/{case_id}/updates",
                          json={"ambulance_id": f"amb-{uid}", "action": "handover",
                                "handover": {"S": "SpO2 88%"}})
    assert updated.status_code == 200 and updated.json() == "offered"
    wrong = client.post(f"/api/cases/{case_id}/updates",
                        json={"ambulance_id": "amb-other", "action": "cancel", "reason": "x"})
    assert wrong.status_code == 409
    record = client.get(f"/api/cases/{case_id}/record.json").json()
    assert record["handover"] == {"S": "SpO2 88%"} and len(record["diagnoses"]) == 1
    assert record["notice"] == "AI result, not for clinical use"
    pdf = client.get(f"/api/cases/{case_id}/record.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and len(pdf.content) > 1500
    assert client.get("/api/cases/nope/record.pdf").status_code == 404

    capacity = client.put(f"/api/hospitals/{nearest}/capacity",
                          json={"er_beds_free": 0, "icu_beds_free": 0, "accepting": False})
    body = capacity.json()
    assert body["accepting"] is False and body["capacity_source"] == "console"
    assert body["capacity_stale"] is False
    assert client.get("/api/hospitals/bos-bmc").json()["capacity_stale"] is True
    offers = client.get(f"/api/hospitals/{nearest}/offers", params={"state": "open"}).json()
    assert [o["case_id"] for o in offers] == [case_id]
