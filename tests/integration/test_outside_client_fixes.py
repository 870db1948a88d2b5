"""The hub's fixes for what outside clients found (issue 20), each driven as
such a client drives it: HTTP to the real app, MQTT through the real Mosquitto,
SQLite and a real PostgreSQL."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hospital_hub.api import create_app
from hospital_hub.auth import create_token, create_user
from hospital_hub.models import Case, CaseStatus, DeadLetter, Hospital, UserCreate
from hospital_hub.registry import read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from shared import topics
from shared.messages import CapacityV1, DiagnosisV1, Envelope, ErDecisionV1, Triage, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.services import wait_until

PASSWORD = "outside client password"
HOSPITALS = [h.id for h in read_registry(SAMPLE_REGISTRY)]


@dataclass
class Hub:
    runtime: HubRuntime
    app: object
    admin: TestClient
    mqtt: PahoCommunicator
    uid: str

    def send(self, number: int, diagnosis: DiagnosisV1 | None = None) -> str:
        ambulance_id = f"amb-{self.uid}"
        case_id = f"20261125T120000Z-{self.uid}-{number:03d}"
        payload = diagnosis or samples.diagnosis(ambulance_id=ambulance_id)
        self.mqtt.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance_id, case_id=case_id),
                          encode(Envelope.wrap(payload, sender=ambulance_id, case_id=case_id)))
        return case_id

    def case(self, case_id: str) -> dict:  # type: ignore[type-arg]
        response = self.admin.get(f"/api/cases/{case_id}")
        return response.json() if response.status_code == 200 else {}

    def capacity(self, hospital_id: str, accepting: bool) -> None:
        response = self.admin.put(f"/api/hospitals/{hospital_id}/capacity", json={
            "er_beds_free": 2, "icu_beds_free": 0, "accepting": accepting})
        assert response.status_code == 200, response.text

    def metrics(self) -> str:
        return self.admin.get("/metrics").text


@pytest.fixture
def hub(database_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[Hub]:
    runtime = HubRuntime(load_hub_settings(hub_id=f"out-{uid}", database_url=database_url,
                                           mqtt=mqtt_settings, offer_ttl_s=900,
                                           maintenance_interval_s=0.2))
    app = create_app(runtime)
    mqtt = PahoCommunicator(mqtt_settings, client_id=f"out-edge-{uid}")
    with TestClient(app) as admin:
        create_user(runtime.engine, UserCreate(username="root", role="admin", password=PASSWORD))
        assert admin.post("/login", data={"username": "root", "password": PASSWORD},
                          follow_redirects=False).status_code == 303
        mqtt.start()
        try:
            yield Hub(runtime, app, admin, mqtt, uid)
        finally:
            mqtt.stop()


def _signed_in(hub: Hub, username: str, address: str = "testclient") -> TestClient:
    client = TestClient(hub.app, client=(address, 50000))  # type: ignore[arg-type]
    assert client.post("/login", data={"username": username, "password": PASSWORD},
                       follow_redirects=False).status_code == 303
    return client


# -- 1: unresolved cases and open offers never fall off; dispatch re-offers -------------------
def test_unresolved_case_stays_on_the_board_past_50_newer_and_dispatch_re_offers_it(
        hub: Hub) -> None:
    for hospital_id in HOSPITALS:
        hub.capacity(hospital_id, accepting=False)
    lost = hub.send(0)
    assert wait_until(lambda: hub.case(lost).get("status") == "no_er_available", timeout=15)
    refused = hub.admin.post(f"/api/cases/{lost}/reoffer")
    assert refused.status_code == 409 and "no ER can take" in refused.json()["detail"]

    open_three = HOSPITALS[:3]  # every later case is offered to these three
    for hospital_id in open_three:
        hub.capacity(hospital_id, accepting=True)
    newer = [hub.send(n) for n in range(1, 52)]
    assert wait_until(lambda: hub.admin.get("/api/cases", params={"limit": 1}).json()["total"]
                      == 52, timeout=60)

    board = hub.admin.get("/", headers={"accept": "text/html"}).text
    assert f'data-case="{lost}" data-status="no_er_available"' in board  # in the needs-action queue
    assert f'action="/cases/{lost}/reoffer"' in board
    for case_id in newer:
        assert f'data-case="{case_id}" data-status="offered"' in board
    console = hub.admin.get(f"/er/{open_three[0]}").text
    oldest = newer[0]  # 51 open offers at this ER: the oldest is still listed
    assert re.search(rf'<tr class="[^"]*" data-case="{oldest}"', console)
    offers = hub.admin.get(f"/api/hospitals/{open_three[0]}/offers", params={"state": "open"}).json()
    assert len(offers) == 51

    doctor = hub.runtime.engine
    create_user(doctor, UserCreate(username="doc-x", role="er_doctor", hospital_id=HOSPITALS[5],
                                   password=PASSWORD))
    assert _signed_in(hub, "doc-x").post(f"/api/cases/{lost}/reoffer").status_code == 403
    reoffered = hub.admin.post(f"/api/cases/{lost}/reoffer")
    assert reoffered.status_code == 200, reoffered.text
    assert reoffered.json()["case_status"] == "offered"
    assert set(reoffered.json()["offered_to"]) == set(open_three)
    assert hub.case(lost)["status"] == "offered"
    audit = hub.admin.get(f"/api/cases/{lost}/audit").json()
    change = next(a for a in audit["access"] if a["what"] == "reoffer" and a["detail"]["offered_to"])
    assert change["username"] == "root" and change["action"] == "change"
    assert any(e["kind"] == "reoffered" and e["actor"] == "root" for e in audit["events"])
    again = hub.admin.post(f"/api/cases/{lost}/reoffer")
    assert again.status_code == 409 and "not waiting" in again.json()["detail"]


# -- 3: bed counts are checked against the registry ------------------------------------------
def test_free_beds_beyond_the_registry_are_refused_over_http_and_mqtt(
        hub: Hub, mqtt_settings: MqttSettings) -> None:
    with Session(hub.runtime.engine) as session:
        mgh = session.get(Hospital, "bos-mgh")
        assert mgh is not None
        beds, before = mgh.er_beds, mgh.er_beds_free
    response = hub.admin.put("/api/hospitals/bos-mgh/capacity", json={
        "er_beds_free": beds * 10, "icu_beds_free": 0, "accepting": True})
    assert response.status_code == 422
    assert response.json()["detail"] == (f"er_beds_free {beds * 10} is more than the {beds} "
                                          "ER beds of bos-mgh in the registry")
    assert hub.admin.put("/api/hospitals/bos-mgh/capacity", json={
        "er_beds_free": 1, "icu_beds_free": 0, "accepting": 0}).status_code == 422  # strict bool

    def refused() -> float:
        found = re.search(r'goldenhour_hub_capacity_refused_total\{reason="exceeds_registry"\} ([0-9.]+)',
                          hub.metrics())
        return float(found.group(1)) if found else 0.0

    # capacity is retained: an earlier run's report on the shared broker may already have been counted
    already = refused()
    er = PahoCommunicator(mqtt_settings, client_id=f"out-er-{hub.uid}")
    er.start()
    try:
        er.publish(topics.ER_CAPACITY.topic(hospital_id="bos-mgh"), encode(Envelope.wrap(
            CapacityV1(er_beds_free=beds + 1, icu_beds_free=0), sender="bos-mgh")))
    finally:
        er.stop()
    assert wait_until(lambda: refused() >= already + 1, timeout=10)
    with Session(hub.runtime.engine) as session:
        assert session.get(Hospital, "bos-mgh").er_beds_free == before  # type: ignore[union-attr]


# -- 4: a stranger cannot lock a doctor out --------------------------------------------------
def test_wrong_passwords_from_one_address_do_not_lock_the_doctor_out_elsewhere(hub: Hub) -> None:
    create_user(hub.runtime.engine, UserCreate(username="er-bos-tufts", role="er_doctor",
                                               hospital_id="bos-tufts", password=PASSWORD))
    stranger = TestClient(hub.app, client=("127.0.0.2", 40000))  # type: ignore[arg-type]
    for _ in range(5):
        assert stranger.post("/login", data={"username": "er-bos-tufts",
                                             "password": "guess"}).status_code == 401
    assert stranger.post("/login", data={"username": "er-bos-tufts",
                                         "password": PASSWORD}).status_code == 429
    doctor = TestClient(hub.app, client=("127.0.0.3", 40001))  # type: ignore[arg-type]
    signed_in = doctor.post("/login", data={"username": "er-bos-tufts", "password": PASSWORD},
                            follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/er/bos-tufts"


# -- 6: the API's contract: offline docs, bearer auth, rules in the schema -------------------
def test_docs_are_served_offline_and_the_schema_states_its_rules(hub: Hub) -> None:
    docs = hub.admin.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs)
    assert "/static/swagger/swagger-ui-bundle.js" in assets and "/static/swagger/swagger-ui.css" in assets
    assert not [a for a in assets if "://" in a], "no asset may come from another site"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert hub.admin.get(f"/static/swagger/{asset}").status_code == 200

    schema = hub.admin.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        **schema["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    decision = schema["paths"]["/api/cases/{case_id}/offers/{hospital_id}/decision"]["post"]
    assert {"401", "403", "404", "409", "422"} <= set(decision["responses"])
    assert decision["security"] == [{"bearerAuth": []}]
    decline = schema["components"]["schemas"]["DeclineBody"]
    assert "reason" in decline["required"] and decline["properties"]["reason"]["minLength"] == 1
    cancel = schema["components"]["schemas"]["CancelOrDivert"]
    assert "reason" in cancel["required"]
    date_to = next(p for p in schema["paths"]["/api/cases"]["get"]["parameters"]
                   if p["name"] == "date_to")["schema"]["anyOf"][0]
    assert re.search(date_to["pattern"], "2026-01-02T03:04:05Z")
    for bad in ("0.5", "1969-12-31T23:59:59Z", "2201-01-01T00:00:00Z"):
        assert not re.search(date_to["pattern"], bad)
        assert hub.admin.get("/api/cases", params={"date_to": bad}).status_code == 422
    assert hub.admin.get("/health").json()["status"] in ("ok", "degraded")


# -- 8: a decision for a case the ER was never offered ---------------------------------------
def test_a_decision_on_a_case_never_offered_is_refused_and_counted_not_dead_lettered(
        hub: Hub, mqtt_settings: MqttSettings, caplog: pytest.LogCaptureFixture) -> None:
    case_id = hub.send(1)
    assert wait_until(lambda: len(hub.case(case_id).get("offers", [])) == 3, timeout=15)
    offered = {o["hospital_id"] for o in hub.case(case_id)["offers"]}
    stranger = next(h for h in HOSPITALS if h not in offered)
    er = PahoCommunicator(mqtt_settings, client_id=f"out-er-{hub.uid}")
    er.start()
    caplog.set_level(logging.WARNING, logger="hospital_hub.handlers")
    try:
        er.publish(topics.ER_DECISION.topic(case_id=case_id, hospital_id=stranger), encode(
            Envelope.wrap(ErDecisionV1(hospital_id=stranger, decision="accept", decided_by="Dr Z"),
                          sender=stranger, case_id=case_id)))
    finally:
        er.stop()
    line = 'goldenhour_hub_decisions_refused_total{reason="not_offered"} 1.0'
    assert wait_until(lambda: line in hub.metrics(), timeout=10)
    assert "goldenhour_hub_dead_letters_total{" not in hub.metrics()  # no dead letter counted
    with Session(hub.runtime.engine) as session:
        assert session.exec(select(DeadLetter)).all() == []
    refused = [r for r in caplog.records if "not offered" in r.getMessage()]
    assert refused and all(r.levelno == logging.WARNING for r in refused)
    assert hub.case(case_id)["status"] == "offered"


# -- 9: the stored triage label is the level's ------------------------------------------------
def test_an_inconsistent_triage_label_is_replaced_by_the_levels(hub: Hub) -> None:
    base = samples.diagnosis(ambulance_id=f"amb-{hub.uid}")
    wrong = base.model_copy(update={"triage": Triage(level=1, label="less urgent",
                                                     reasons=["test: mislabelled"])})
    case_id = hub.send(1, wrong)
    assert wait_until(lambda: hub.case(case_id).get("triage_level") == 1, timeout=15)
    assert hub.case(case_id)["triage_label"] == "resuscitation"
    listed = hub.admin.get("/api/cases").json()["items"]
    assert [(c["triage_level"], c["triage_label"]) for c in listed] == [(1, "resuscitation")]
    with Session(hub.runtime.engine) as session:
        assert session.get(Case, case_id).triage_label == "resuscitation"  # type: ignore[union-attr]


# -- 11: HTML errors for pages, no "about 0 min", no "a admin" ---------------------------------
def test_pages_answer_html_errors_and_never_say_about_0_min_or_a_admin(hub: Hub) -> None:
    html = {"accept": "text/html,application/xhtml+xml"}
    for path in ("/no-such-page", "/er/nope"):
        page = hub.admin.get(path, headers=html)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "Page not found" in page.text and "<html" in page.text
    api = hub.admin.get("/api/cases/nope", headers=html)
    assert api.status_code == 404 and api.json() == {"detail": "no case nope"}

    mgh = next(h for h in read_registry(SAMPLE_REGISTRY) if h.id == "bos-mgh")
    at_the_door = samples.diagnosis(ambulance_id=f"amb-{hub.uid}", lat=mgh.lat, lon=mgh.lon)
    case_id = hub.send(1, at_the_door)
    assert wait_until(lambda: len(hub.case(case_id).get("offers", [])) == 3, timeout=15)
    assert hub.case(case_id)["offers"][0]["hospital_id"] == "bos-mgh"
    console = hub.admin.get("/er/bos-mgh").text
    assert "under 1 min" in console and "about 0 min" not in console
    accepted = hub.admin.post(f"/api/cases/{case_id}/offers/bos-mgh/decision",
                              json={"decision": "accept"})
    assert accepted.status_code == 200
    view = hub.admin.get(f"/er/bos-mgh/cases/{case_id}").text
    assert "arrives about" in view and "about 0 min" not in view
    assert re.search(r'class="arrival-minutes">(arriving|under 1 min)<', view)

    create_user(hub.runtime.engine, UserCreate(username="er-gw", role="service",
                                               hospital_id="bos-mgh"))
    token = create_token(hub.runtime.engine, "er-gw")
    refused = TestClient(hub.app).get("/api/ambulances", headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 403 and refused.json()["detail"] == "not allowed for the role er_service"
    assert CaseStatus.ACCEPTED.value == hub.case(case_id)["status"]
