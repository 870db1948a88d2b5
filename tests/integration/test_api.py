"""The hub's HTTP API, served by the real app over a real broker and database."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlmodel import Session

from hospital_hub import i18n
from hospital_hub.api import create_app
from hospital_hub.auth import create_token, create_user
from hospital_hub.events import EventFeed
from hospital_hub.models import CaseImage, CaseStatus, OfferState, UserCreate, utcnow
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.messages import DiagnosisV1, Envelope, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.browser.conftest import heat_map_diagnosis
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


def _send_case(mqtt_settings: MqttSettings, uid: str, diagnosis: DiagnosisV1 | None = None) -> str:
    sender = PahoCommunicator(mqtt_settings, client_id=f"api-edge-{uid}")
    sender.start()
    case_id = f"20261125T120000Z-{uid}"
    envelope = Envelope.wrap(diagnosis or samples.diagnosis(ambulance_id=f"amb-{uid}"),
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
    # Stale means: never reported, or reported longer ago than CAPACITY_STALE_S
    # (other tests' simulated ERs may have left retained reports on the broker).
    from datetime import datetime, timedelta

    for hospital in client.get("/api/hospitals").json():
        reported = hospital["capacity_at"]
        old = reported is None or (datetime.now().astimezone()
                                   - datetime.fromisoformat(reported) > timedelta(seconds=600))
        assert hospital["capacity_stale"] is old, hospital["id"]
    offers = client.get(f"/api/hospitals/{nearest}/offers", params={"state": "open"}).json()
    assert [o["case_id"] for o in offers] == [case_id]


def test_heat_maps_are_served_as_jpeg_only_to_those_who_see_the_case(
        client: TestClient, mqtt_settings: MqttSettings, uid: str) -> None:
    diagnosis = heat_map_diagnosis(f"amb-{uid}")
    case_id = _send_case(mqtt_settings, uid, diagnosis)
    assert wait_until(lambda: len(client.get(f"/api/cases/{case_id}").json().get("offers", [])) == 3)
    assert diagnosis.overlays is not None
    for overlay in diagnosis.overlays:  # signed in as an admin
        response = client.get(f"/api/cases/{case_id}/overlays/{overlay.finding}.jpg")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "private, no-store"
        assert response.content == overlay.jpeg
        assert max(Image.open(io.BytesIO(response.content)).size) == 320
    for absent in ("Hernia", "Nonsense"):  # not in the top 3; not a finding
        assert client.get(f"/api/cases/{case_id}/overlays/{absent}.jpg").status_code == 404
    assert client.get("/api/cases/nope/overlays/Pneumothorax.jpg").status_code == 404

    # The record names each overlay's URL instead of carrying the image.
    record = client.get(f"/api/cases/{case_id}/record.json")
    payload = record.json()["diagnoses"][0]["payload"]
    assert [o["finding"] for o in payload["overlays"]] == [str(f) for f in diagnosis.top3]
    assert all("jpeg" not in o for o in payload["overlays"]) and len(record.content) < 12_000
    assert client.get(payload["overlays"][0]["url"]).content == diagnosis.overlays[0].jpeg
    assert payload["regions"][1]["source"] == "detector"
    assert client.get(f"/api/cases/{case_id}/overlays/Pneumothorax.jpg",
                      params={"diagnosis": 10**9}).status_code == 404
    pdf = client.get(f"/api/cases/{case_id}/record.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

    # The offered ER's doctor sees them; another ER's gets 404, as for any
    # case not offered to it; an ambulance's token reads no case (403).
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    offered = [o["hospital_id"] for o in client.get(f"/api/cases/{case_id}").json()["offers"]]
    other = next(h["id"] for h in client.get("/api/hospitals").json() if h["id"] not in offered)
    url = f"/api/cases/{case_id}/overlays/Pneumothorax.jpg"
    for name, hospital, expected in (("doc-offered", offered[0], 200), ("doc-other", other, 404)):
        create_user(runtime.engine, UserCreate(username=name, role="er_doctor",
                                               hospital_id=hospital, password="a doctor password"))
        client.cookies.clear()
        signed_in = client.post("/login", data={"username": name, "password": "a doctor password"},
                                follow_redirects=False)
        assert signed_in.status_code == 303
        response = client.get(url)
        assert response.status_code == expected, name
        assert (response.headers["content-type"] == "image/jpeg") == (expected == 200)
    client.cookies.clear()
    create_user(runtime.engine, UserCreate(username=f"amb-svc-{uid}", role="service",
                                           ambulance_id=f"amb-{uid}"))
    token = create_token(runtime.engine, f"amb-svc-{uid}")
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert client.get(url).status_code == 401


# -- the consoles' helpers: preview, translations, event feed ------------------------------------
def _dicom(photometric: str) -> bytes:
    """A 16-bit DICOM gradient (dark left, bright right in stored values) with a rescale."""

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation = "DX", photometric
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 64, 80, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.PixelData = np.tile(np.linspace(0, 4000, 80).astype(np.uint16), (64, 1)).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_preview_renders_dicom_for_the_browser(client: TestClient, mqtt_settings: MqttSettings,
                                               uid: str) -> None:



    case_id = _send_case(mqtt_settings, uid)
    assert wait_until(lambda: client.get(f"/api/cases/{case_id}").status_code == 200)
    assert client.get(f"/api/cases/{case_id}/preview.png").status_code == 404  # not yet complete
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    for photometric, left_brighter in (("MONOCHROME2", False), ("MONOCHROME1", True)):
        data = _dicom(photometric)
        with Session(runtime.engine) as session:
            session.add(CaseImage(case_id=case_id, image_sha256=photometric[-1] * 64,
                                  media_type="application/dicom", total_bytes=len(data),
                                  chunk_count=1, received_chunks=1, complete=True,
                                  completed_at=utcnow(), data=data))
            session.commit()
        response = client.get(f"/api/cases/{case_id}/preview.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert image.mode == "L" and image.size == (80, 64)
        left, right = image.getpixel((1, 32)), image.getpixel((78, 32))
        assert (left > right) == left_brighter, (photometric, left, right)


def test_every_template_string_is_in_english_and_korean() -> None:


    text = "".join(p.read_text() for p in Path(i18n.__file__).parent.joinpath("templates")
                   .glob("*.html"))
    keys = set(re.findall(r"""\bt\(["']([A-Za-z0-9_.]+)["']\)""", text))
    keys |= {f"state.{s.value}" for s in OfferState} | {f"status.{s.value}" for s in CaseStatus}
    keys |= {f"kind.{k}" for k in ("admin", "dispatcher", "er_doctor", "er_service", "ambulance")}
    keys |= {"error.reason_needed", "error.already_placed", "error.already_decided",
             "esc.no_er", "esc.expired", "esc.critical_waiting", "login.wrong", "login.too_many"}
    assert len(keys) > 80
    missing = sorted(k for k in keys if k not in i18n.STRINGS or not all(i18n.STRINGS[k]))
    assert not missing
    assert i18n.translate("ko", "ai_notice") != i18n.translate("en", "ai_notice")
    assert i18n.translate("xx", "accept") == "Accept"  # unknown language: English


def test_event_feed_tells_an_er_only_about_its_own_cases(
        client: TestClient, mqtt_settings: MqttSettings, uid: str) -> None:


    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    before = utcnow() - timedelta(seconds=1)
    case_id = _send_case(mqtt_settings, uid)
    assert wait_until(lambda: len(client.get(f"/api/cases/{case_id}").json().get("offers", [])) == 3)
    offered = [o["hospital_id"] for o in client.get(f"/api/cases/{case_id}").json()["offers"]]
    other = next(h["id"] for h in client.get("/api/hospitals").json() if h["id"] not in offered)

    def heard(hospital_id: str | None) -> str:
        return str(EventFeed(runtime.engine, hospital_id, since=before).poll())

    assert case_id in heard(None) and case_id in heard(offered[0])
    assert case_id not in heard(other)

    def change() -> None:
        time.sleep(0.4)
        client.put(f"/api/hospitals/{offered[0]}/capacity",
                   json={"er_beds_free": 2, "icu_beds_free": 1, "accepting": True})

    thread = threading.Thread(target=change)
    thread.start()
    events = client.get("/api/events", params={"max_s": 1.5})
    thread.join()
    assert events.headers["content-type"].startswith("text/event-stream")
    assert events.text.startswith("retry: 1000\nevent: ready")
    assert f'"hospital_id":"{offered[0]}"' in events.text
