"""The hospital-format routes of the hub's API (FHIR Bundle, DICOM SR and SC
downloads), served by the real app over a real broker and database, with the
same access rules as the other per-case routes."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydicom import dcmread
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

from hospital_hub.api import create_app
from hospital_hub.auth import create_token, create_user
from hospital_hub.fhir import MEDIA_TYPE
from hospital_hub.models import UserCreate
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared.messages import Envelope, ImageChunkV1
from shared.notice import AI_NOTICE
from shared.settings import MqttSettings
from tests.hospital_formats import diagnosis, dicom_xray

PASSWORD = "a long test password"


@pytest.fixture
def client(database_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[TestClient]:
    runtime = HubRuntime(load_hub_settings(hub_id=f"formats-{uid}", database_url=database_url,
                                           mqtt=mqtt_settings))
    with TestClient(create_app(runtime)) as test_client:
        create_user(runtime.engine, UserCreate(username="root", role="admin", password=PASSWORD))
        yield test_client


def _runtime(client: TestClient) -> HubRuntime:
    return client.app.state.runtime  # type: ignore[attr-defined,no-any-return]


def _sign_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD},
                           follow_redirects=False)
    assert response.status_code == 303


def _case(client: TestClient, uid: str, heat_maps: bool = True) -> tuple[str, bytes]:
    """A case from ambulance ``amb-<uid>``, offered to three ERs; its image not sent yet."""
    image = dicom_xray()
    case_id = f"20261125T120000Z-{uid}{int(heat_maps)}"
    result = diagnosis(image, "dicom", heat_maps, ambulance_id=f"amb-{uid}")
    assert _runtime(client).cases.receive_diagnosis(
        Envelope.wrap(result, sender=f"amb-{uid}", case_id=case_id))
    return case_id, image


def _send_image(client: TestClient, uid: str, case_id: str, image: bytes) -> None:
    sha = hashlib.sha256(image).hexdigest()
    chunk = ImageChunkV1(ambulance_id=f"amb-{uid}", image_sha256=sha, media_type="application/dicom",
                         total_bytes=len(image), index=0, count=1, sha256=sha, data=image)
    assert _runtime(client).images.receive_chunk(
        case_id, Envelope.wrap(chunk, sender=f"amb-{uid}", case_id=case_id))


def test_fhir_bundle_and_dicom_downloads(client: TestClient, uid: str) -> None:
    _sign_in(client, "root")
    case_id, image = _case(client, uid)
    response = client.get(f"/api/cases/{case_id}/fhir")
    assert response.status_code == 200 and response.headers["content-type"] == MEDIA_TYPE
    assert response.headers["cache-control"] == "private, no-store"
    bundle = Bundle.model_validate_json(response.content)
    report = next(e.resource for e in bundle.entry if isinstance(e.resource, DiagnosticReport))
    assert report.status == "preliminary" and report.conclusion.startswith(AI_NOTICE)
    assert report.imagingStudy is None  # a DICOM's study is known once the image is in
    positives = sum(s.positive for s in diagnosis(image).findings)
    assert len(report.result) == positives + 1  # and the triage

    for kind in ("sr", "sc"):  # until the full image has arrived
        assert client.get(f"/api/cases/{case_id}/dicom/{kind}").status_code == 404
    _send_image(client, uid, case_id, image)
    source = dcmread(io.BytesIO(image))
    downloads = {}
    for kind, sop_class in (("sr", Comprehensive3DSRStorage), ("sc", SecondaryCaptureImageStorage)):
        response = client.get(f"/api/cases/{case_id}/dicom/{kind}")
        assert response.status_code == 200 and response.headers["content-type"] == "application/dicom"
        assert f"goldenhour-{case_id}-{kind}.dcm" in response.headers["content-disposition"]
        downloads[kind] = response.content
        dataset = dcmread(io.BytesIO(response.content))
        assert dataset.SOPClassUID == sop_class and dataset.StudyInstanceUID == source.StudyInstanceUID
    assert client.get(f"/api/cases/{case_id}/dicom/sr").content == downloads["sr"]  # stable
    bundle = Bundle.model_validate_json(client.get(f"/api/cases/{case_id}/fhir").content)
    study = next(e.resource for e in bundle.entry if e.resource.get_resource_type() == "ImagingStudy")
    assert study.identifier[0].value == f"urn:oid:{source.StudyInstanceUID}"

    no_heat_map, image2 = _case(client, uid, heat_maps=False)
    _send_image(client, uid, no_heat_map, image2)
    assert client.get(f"/api/cases/{no_heat_map}/dicom/sr").status_code == 200
    assert client.get(f"/api/cases/{no_heat_map}/dicom/sc").status_code == 404
    for kind in ("fhir", "dicom/sr", "dicom/sc"):
        assert client.get(f"/api/cases/nope/{kind}").status_code == 404


def test_only_those_who_see_the_case_get_its_formats(client: TestClient, uid: str) -> None:
    case_id, image = _case(client, uid)
    _send_image(client, uid, case_id, image)
    runtime = _runtime(client)
    _sign_in(client, "root")
    offered = [o["hospital_id"] for o in client.get(f"/api/cases/{case_id}").json()["offers"]]
    other = next(h["id"] for h in client.get("/api/hospitals").json() if h["id"] not in offered)
    urls = [f"/api/cases/{case_id}/{kind}" for kind in ("fhir", "dicom/sr", "dicom/sc")]
    for name, hospital, expected in (("doc-offered", offered[0], 200), ("doc-other", other, 404)):
        create_user(runtime.engine, UserCreate(username=name, role="er_doctor", hospital_id=hospital,
                                               password=PASSWORD))
        _sign_in(client, name)
        assert [client.get(url).status_code for url in urls] == [expected] * 3, name
    client.cookies.clear()
    create_user(runtime.engine, UserCreate(username=f"er-svc-{uid}", role="service",
                                           hospital_id=offered[0]))
    create_user(runtime.engine, UserCreate(username=f"amb-svc-{uid}", role="service",
                                           ambulance_id=f"amb-{uid}"))
    for name, expected in ((f"er-svc-{uid}", 200), (f"amb-svc-{uid}", 403)):
        token = create_token(runtime.engine, name)
        headers = {"Authorization": f"Bearer {token}"}
        assert [client.get(url, headers=headers).status_code for url in urls] == [expected] * 3, name
    assert [client.get(url).status_code for url in urls] == [401] * 3
