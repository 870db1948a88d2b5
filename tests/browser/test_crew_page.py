"""The ambulance crew page in headless Chromium, served by a real uvicorn in a
thread around a real edge agent, with a real Mosquitto, a real hub (SQLite)
and simulated ERs that accept every offer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlmodel import Session

from edge_agent.agent import EdgeAgent
from edge_agent.ood import shipped_parameters
from edge_agent.operators import Prediction
from edge_agent.pipeline import DiagnosisPipeline
from edge_agent.placeholder import PlaceholderClassifier
from edge_agent.settings import PLACEHOLDER, load_edge_settings
from edge_agent.triage import assess
from edge_agent.web import CrewServer
from hospital_hub.records import case_record
from hospital_hub.registry import read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from hospital_hub.simulated_er import SimulatedEr, always
from shared.broker import MosquittoBroker, find_mosquitto, free_port
from shared.findings import FINDINGS
from shared.messages import CaseUpdateV1
from shared.settings import MqttSettings
from tests.integration.conftest import xray  # noqa: F401  (fixture)
from tests.services import require, running_mosquitto, wait_until

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1024, "height": 768}


@pytest.fixture(scope="module")
def crew_broker() -> Iterator[MosquittoBroker]:
    """A Mosquitto of this module's own: the simulated ERs publish retained
    capacity, which must not leak into other tests on the session broker."""
    with running_mosquitto() as broker:
        yield broker


@pytest.fixture
def mqtt_settings(crew_broker: MosquittoBroker) -> MqttSettings:
    """Client settings for this module's broker (overrides the session one)."""
    return crew_broker.mqtt_settings(publish_timeout_s=5.0, connect_timeout_s=5.0)


@dataclass
class Crew:
    """A whole system around one ambulance and its crew page."""

    hub: HubRuntime
    edge: EdgeAgent
    server: CrewServer
    ers: list[SimulatedEr] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def hub_record(self, case_id: str) -> dict[str, object]:
        with Session(self.hub.engine) as session:
            return case_record(session, case_id)

    def stop(self) -> None:
        self.server.stop()
        self.edge.stop()
        for er in self.ers:
            er.stop()
        self.hub.stop()


@pytest.fixture
def make_crew(tmp_path: Path, uid: str) -> Iterator[Callable[..., Crew]]:
    crews: list[Crew] = []

    def make(mqtt: MqttSettings, crew_pin: str | None = None,
             pipeline: DiagnosisPipeline | None = None) -> Crew:
        hub = HubRuntime(load_hub_settings(hub_id=f"hub-{uid}", mqtt=mqtt,
                                           database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                                           maintenance_interval_s=0.2))
        hub.start()
        ers = []
        for hospital in read_registry(SAMPLE_REGISTRY):
            er = SimulatedEr.connect(hospital.id, mqtt, always("accept"),
                                     client_id=f"er-{hospital.id}-{uid}", delay_s=0.05)
            er.start()
            ers.append(er)
        # The placeholder classifier (these tests check that its results are
        # flagged), or a pipeline given by the test.
        edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt,
                                            lat=42.3467, lon=-71.0972, confirm_timeout_s=5.0,
                                            model=PLACEHOLDER), pipeline=pipeline)
        edge.start()
        server = CrewServer(edge, port=free_port(), crew_pin=crew_pin)
        server.start()
        crew = Crew(hub, edge, server, ers)
        crews.append(crew)
        return crew

    yield make
    for crew in crews:
        crew.stop()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    yield page
    context.close()


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"crew-{name}.png"), full_page=True)


def _upload(page, crew: Crew, image: Path, **patient: str) -> str:  # type: ignore[no-untyped-def]
    page.goto(f"{crew.url}/")
    page.set_input_files("#xray", str(image))
    if "name" in patient:
        page.fill("#name", patient["name"])
    if "age" in patient:
        page.fill("#age", patient["age"])
    if "sex" in patient:
        page.check(f"input[name=sex][value={patient['sex']}]")
    if "complaint" in patient:
        page.fill("#complaint", patient["complaint"])
    page.click("#send-case")
    page.wait_for_url(f"{crew.url}/cases/**")
    return page.inner_text("#case-id")


def test_upload_diagnose_accept_vitals_and_handover(
        page, make_crew, mqtt_settings: MqttSettings,
        xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    crew = make_crew(mqtt_settings)
    page.goto(f"{crew.url}/")
    assert "connected" in page.inner_text("#link-state")
    _shot(page, "start")
    case_id = _upload(page, crew, xray, name="Jane Roe", age="67", sex="F",
                      complaint="short of breath")

    # the diagnosis summary, marked as an AI result from a placeholder model
    assert "AI result, not for clinical use" in page.inner_text("#diagnosis")
    assert page.locator("#placeholder").is_visible()
    assert page.locator("#top3 li").count() == 3
    sent = crew.edge.cases[case_id].diagnosis
    assert sent is not None
    scores = {s.finding.value: s for s in sent.findings}
    for item in page.locator("#top3 li").all():
        score = scores[item.get_attribute("data-finding") or ""]
        # suspected only at the operating point; the others muted, without the word
        assert item.get_attribute("class") == ("suspected" if score.suspected else "muted")
        assert ("suspected by the AI" in item.inner_text()) == score.suspected
    assert page.inner_text("#triage").strip() in {"1", "2", "3", "4", "5"}

    # the decision arrives by itself (no reload): accepting ER and ETA
    page.locator("#accepted-hospital").wait_for(timeout=20_000)
    decision = crew.edge.cases[case_id].decision
    assert decision is not None and decision.hospital_name is not None
    assert page.inner_text("#accepted-hospital") == decision.hospital_name
    assert "min" in page.inner_text("#eta")
    page.locator("#offers tr[data-hospital] .offer-state", has_text="accepted").wait_for()
    _shot(page, "accepted")

    # vitals through the form reach the hub's record
    form = page.locator("#vitals-form")
    form.locator("input[name=spo2_pct]").fill("91")
    form.locator("input[name=resp_rate]").fill("24")
    form.locator("input[name=heart_rate]").fill("112")
    form.locator("input[name=systolic_bp]").fill("98")
    form.locator("input[name=temperature_c]").fill("38.4")
    form.locator("input[name=avpu][value=V]").check()
    form.locator("input[name=supplemental_o2]").check()
    form.locator("#send-vitals").click()
    page.wait_for_url(f"{crew.url}/cases/{case_id}?sent=vitals")
    assert wait_until(lambda: bool(crew.hub_record(case_id)["vitals"]), timeout=15)
    vitals = crew.hub_record(case_id)["vitals"][-1]  # type: ignore[index]
    assert (vitals["spo2_pct"], vitals["resp_rate"], vitals["heart_rate"], vitals["systolic_bp"],
            vitals["avpu"], vitals["supplemental_o2"]) == (91, 24, 112, 98, "V", True)
    assert vitals["temperature_c"] == pytest.approx(38.4)

    # the ATMIST draft is pre-filled from patient, vitals and the AI result
    handover = page.locator("#handover-form")
    assert "67 y" in handover.locator("textarea[name=h_age]").input_value()
    assert handover.locator("textarea[name=h_mechanism]").input_value() == "short of breath"
    injuries = handover.locator("textarea[name=h_injuries]").input_value()
    assert "AI result, not for clinical use" in injuries and "placeholder" in injuries
    signs = handover.locator("textarea[name=h_signs]").input_value()
    assert "SpO2 91%" in signs and "AVPU V" in signs
    assert handover.locator("textarea[name=h_treatment]").input_value() == "supplemental O2"
    handover.locator("textarea[name=h_time]").fill("onset 20 min ago at home")
    handover.locator("textarea[name=h_treatment]").fill("O2 15 L/min by mask")
    _shot(page, "handover")
    handover.locator("#send-handover").click()
    page.wait_for_url(f"{crew.url}/cases/{case_id}?sent=handover")
    assert wait_until(lambda: bool(crew.hub_record(case_id)["handover"]), timeout=15)
    sent = crew.hub_record(case_id)["handover"]
    assert isinstance(sent, dict)
    assert sent["time"] == "onset 20 min ago at home"
    assert sent["treatment"] == "O2 15 L/min by mask"
    assert "AI result, not for clinical use" in sent["injuries"]
    assert page.locator("#handover-sent").is_visible()

    # the case list shows it, accepted
    page.click("#back")
    row = page.locator(f"#cases tr[data-case='{case_id}']")
    assert "accepted" in row.inner_text()
    _shot(page, "cases")


def test_offline_upload_is_queued_then_delivered_when_the_broker_returns(
        page, make_crew, xray: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    require(find_mosquitto() is not None, "mosquitto is not installed")
    broker = MosquittoBroker(workdir=tmp_path / "broker")
    broker.start()
    try:
        crew = make_crew(broker.mqtt_settings(publish_timeout_s=3.0, connect_timeout_s=3.0))
        broker.kill()
        assert wait_until(lambda: not crew.edge.communicator.connected, timeout=15)
        case_id = _upload(page, crew, xray, complaint="fall from ladder")
        page.locator("#link-state", has_text="offline").wait_for(timeout=10_000)
        assert int(page.inner_text("#queued-count")) > 0
        assert page.locator(f"#unconfirmed [data-unconfirmed='{case_id}']").count() == 1
        assert "queued" in page.inner_text("#case-state")
        _shot(page, "offline")

        broker.start()  # same port, same persistence folder
        page.locator("#link-state", has_text="connected").wait_for(timeout=30_000)
        page.locator("#accepted-hospital").wait_for(timeout=30_000)
        page.locator("#queued-count", has_text="0").wait_for(timeout=30_000)
        assert crew.hub_record(case_id)["case"]["status"] == "accepted"  # type: ignore[index]
        _shot(page, "reconnected")
    finally:
        broker.cleanup()


def test_pin_screen_guards_the_page(page, make_crew,
                                    mqtt_settings: MqttSettings) -> None:  # type: ignore[no-untyped-def]
    crew = make_crew(mqtt_settings, crew_pin="4711")
    page.goto(f"{crew.url}/")
    page.wait_for_url(f"{crew.url}/pin?next=%2F")
    assert page.locator("#link").count() == 0  # nothing about cases before the PIN
    page.fill("#pin", "0000")
    page.click("#pin-form button[type=submit]")
    assert "Wrong PIN" in page.inner_text("#error")
    _shot(page, "pin")
    page.fill("#pin", "4711")
    page.click("#pin-form button[type=submit]")
    page.wait_for_url(f"{crew.url}/")
    assert page.locator("#case-form").is_visible()
    live = page.request.get(f"{crew.url}/live")
    assert live.ok
    page.click("#lock")
    page.wait_for_url(f"{crew.url}/pin")
    assert page.request.get(f"{crew.url}/live").status == 401


def test_forms_need_the_csrf_token_and_korean_text(
        page, make_crew, mqtt_settings: MqttSettings,
        xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    crew = make_crew(mqtt_settings)
    page.goto(f"{crew.url}/")
    # same browser, same session cookie, but no token: refused
    refused = page.request.post(f"{crew.url}/cases", multipart={
        "xray": {"name": "x.png", "mimeType": "image/png", "buffer": xray.read_bytes()}})
    assert refused.status == 403
    forged = page.request.post(f"{crew.url}/cases", multipart={
        "csrf_token": "forged",
        "xray": {"name": "x.png", "mimeType": "image/png", "buffer": xray.read_bytes()}})
    assert forged.status == 403
    assert crew.edge.outbox.cases() == []
    # with the page's own token, the same post works
    token = page.locator("#case-form input[name=csrf_token]").input_value()
    ok = page.request.post(f"{crew.url}/cases", multipart={
        "csrf_token": token,
        "xray": {"name": "x.png", "mimeType": "image/png", "buffer": xray.read_bytes()}})
    assert ok.ok and len(crew.edge.outbox.cases()) == 1

    page.click("#lang-switch")
    page.wait_for_url(f"{crew.url}/")
    assert "AI 결과, 임상용 아님" in page.inner_text(".notice")
    assert "새 사례" in page.inner_text("#new-case")
    _shot(page, "korean")
    page.click("#lang-switch")
    assert "New case" in page.inner_text("#new-case")


class HeatMapClassifier(PlaceholderClassifier):
    """The placeholder classifier with synthetic class activation maps, so that
    the real heat-map code (:mod:`edge_agent.heatmap`) makes overlays and boxes:
    a fake for the page, not a model (its results stay flagged as placeholder)."""

    def infer(self, batch: np.ndarray) -> Prediction:
        gy, gx = np.mgrid[0:12, 0:12]
        cam = np.stack([np.exp(-((gx - 2 - i % 8) ** 2 + (gy - 3 - i % 6) ** 2) / 3.0)
                        for i in range(len(FINDINGS))])
        return Prediction(super().infer(batch).probabilities, cam)


@pytest.fixture
def chest_like(tmp_path: Path) -> Path:
    """A synthetic image that the edge's chest X-ray guard accepts: its own
    average chest X-ray (the guard's template), enlarged, with some grain."""
    template = np.asarray(shipped_parameters().template, np.float32)
    scaled = ((template - template.min()) / np.ptp(template) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(scaled).resize((512, 512), Image.Resampling.BICUBIC), np.float32)
    noise = np.random.default_rng(0).normal(0, 4, big.shape)
    path = tmp_path / "chest-like.png"
    Image.fromarray(np.clip(big * 0.85 + 20 + noise, 0, 255).astype(np.uint8)).save(path)
    return path


HEAT_MAP_LABEL = "AI heat map — where the model's evidence is, not a diagnosis; not for clinical use"


def test_heat_maps_and_the_triage_re_assessed_with_vitals(
        page, make_crew, mqtt_settings: MqttSettings,
        chest_like: Path) -> None:  # type: ignore[no-untyped-def]
    crew = make_crew(mqtt_settings, pipeline=DiagnosisPipeline(HeatMapClassifier()))
    case_id = _upload(page, crew, chest_like, complaint="chest pain")
    diagnosis = crew.edge.cases[case_id].diagnosis
    assert diagnosis is not None and diagnosis.overlays is not None

    # the top 3 findings' heat maps, loaded, each where the edge's code put it
    figures = page.locator("#heatmaps figure.heatmap")
    assert [figures.nth(i).get_attribute("data-finding") for i in range(figures.count())] == [
        f.value for f in diagnosis.top3]
    page.wait_for_function("""() => [...document.querySelectorAll('#heatmaps img')]
        .every(img => img.complete && img.naturalWidth === 320)""", timeout=10_000)
    assert page.inner_text("#heatmap-label") == HEAT_MAP_LABEL
    assert "AI result, not for clinical use" in page.inner_text("#heatmaps h2")
    boxes = page.locator("#heatmaps .box[data-source=heatmap]")
    assert boxes.count() == len(diagnosis.regions)  # the top 3 above their thresholds
    first = page.request.get(f"{crew.url}/cases/{case_id}/overlays/{diagnosis.top3[0].value}.jpg")
    assert first.ok and first.headers["content-type"] == "image/jpeg"
    assert first.body() == diagnosis.overlays[0].jpeg
    assert page.request.get(f"{crew.url}/cases/{case_id}/overlays/Nonsense.jpg").status == 404
    assert page.request.get(f"{crew.url}/cases/nope/overlays/Mass.jpg").status == 404

    # triage from the image alone, with its reasons
    assert page.get_attribute("#triage-source", "data-reassessed") == "false"
    assert "send vitals to re-assess" in page.inner_text("#triage-source")
    assert page.locator("#reasons li").all_inner_texts() == diagnosis.triage.reasons
    assert "vitals not yet entered: level from the image alone" in diagnosis.triage.reasons

    # vitals: the agent re-assesses; the page shows the new level and why,
    # and the hub gets it
    form = page.locator("#vitals-form")
    form.locator("input[name=spo2_pct]").fill("84")
    form.locator("input[name=resp_rate]").fill("30")
    form.locator("input[name=heart_rate]").fill("124")
    form.locator("#send-vitals").click()
    page.wait_for_url(f"{crew.url}/cases/{case_id}?sent=vitals")
    sent = CaseUpdateV1.model_validate_json(crew.edge.outbox.case_docs(case_id)["update:vitals"])
    assert sent.vitals is not None and sent.vitals.spo2_pct == 84
    expected = assess(diagnosis.findings, sent.vitals, placeholder=True)
    assert sent.triage == expected
    assert expected.level == 1
    assert page.inner_text("#triage") == "1"
    assert page.get_attribute("#triage-source", "data-reassessed") == "true"
    reasons = page.locator("#reasons li").all_inner_texts()
    assert reasons == expected.reasons
    assert any(r.startswith("SpO2 84% below 90% -> level 1") for r in reasons)
    assert f"{diagnosis.triage.level} ({diagnosis.triage.label})" in page.inner_text(
        "#triage-initial")
    assert wait_until(lambda: crew.hub_record(case_id)["case"]["triage_level"] == 1,  # type: ignore[index]
                      timeout=15)
    history = crew.hub_record(case_id)["triage_history"]
    assert history[-1]["reasons"] == expected.reasons  # type: ignore[index]
    _shot(page, "heatmaps")

    # after a restart the page reads the case from the outbox's documents
    crew.edge.cases.pop(case_id)
    again = page.request.get(f"{crew.url}/cases/{case_id}/overlays/{diagnosis.top3[2].value}.jpg")
    assert again.ok and again.body() == diagnosis.overlays[2].jpeg
    page.goto(f"{crew.url}/cases/{case_id}")
    assert page.locator("#heatmaps figure.heatmap").count() == 3
    assert page.inner_text("#triage") == "1"
    page.goto(f"{crew.url}/")
    assert page.inner_text(f"#cases tr[data-case='{case_id}'] .triage") == "1"
