"""The ER doctor's console and case view in headless Chromium, with a real
broker, hub (uvicorn) and edge agent: live updates without reloading, the
critical alert, the X-ray viewer, deciding, and the walls between ERs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.triage import assess
from hospital_hub.registry import read_registry
from hospital_hub.settings import SAMPLE_REGISTRY
from shared import topics
from shared.messages import CaseUpdateV1, Envelope, Vitals, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.browser.conftest import (
    MGH,
    TEST_MODEL,
    LiveHub,
    heat_map_diagnosis,
    same_document,
    screenshot,
    send_sample_case,
    sign_in,
    wait_live,
)
from tests.integration.conftest import xray  # noqa: F401  (fixture)
from tests.services import wait_until

pytestmark = pytest.mark.browser


def _probe(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("({...window.ghViewer.state(), sum: window.ghViewer.checksum()})")
    return state


def test_a_case_appears_live_and_the_doctor_views_and_accepts_it(
        live_hub: LiveHub, ambulance: EdgeAgent, new_page: Callable[[], Any],
        mqtt_settings: MqttSettings, uid: str, xray: Path) -> None:  # noqa: F811
    doctor = new_page()
    sign_in(doctor, live_hub, "er-bos-mgh", "/er/bos-mgh")
    assert doctor.locator("#no-offers").is_visible()

    record = ambulance.submit(xray)
    sent = time.monotonic()
    row = doctor.locator(f"#open-offers tr[data-case='{record.case_id}']")
    row.wait_for(timeout=2_000)
    assert time.monotonic() - sent < 2.0, "the case must appear within 2 s"
    assert same_document(doctor), "the console must update without reloading"
    assert live_hub.offered(record.case_id)[0] == "bos-mgh"
    assert "AI result, not for clinical use" in row.inner_text()
    countdown = row.locator(".countdown")
    first = countdown.inner_text()
    doctor.wait_for_function(f"document.querySelector(\"tr[data-case='{record.case_id}'] .countdown\")"
                             f".textContent !== {first!r}", timeout=3_000)
    assert countdown.inner_text().count(":") == 1  # m:ss

    critical_id, _ = send_sample_case(mqtt_settings, uid)
    critical = doctor.locator(f"#open-offers tr[data-case='{critical_id}']")
    critical.wait_for(timeout=5_000)
    assert same_document(doctor)
    alert = doctor.locator("#critical-alert")
    assert alert.is_visible() and critical_id in alert.inner_text()
    assert alert.evaluate("el => getComputedStyle(el).animationName") == "gh-flash"
    assert critical.evaluate("el => getComputedStyle(el).animationName") == "none"  # badge only
    assert critical.locator(".triage-badge.pulse").count() == 1
    rows = doctor.locator("#open-offers tr[data-case]")
    assert rows.first.get_attribute("data-case") == critical_id  # most severe first
    screenshot(doctor, "er-console")

    row.locator("a.case-link").click()
    doctor.wait_for_url(f"{live_hub.url}/er/bos-mgh/cases/{record.case_id}")
    wait_live(doctor)
    doctor.wait_for_function("document.getElementById('xray').dataset.source === 'full'",
                             timeout=10_000)
    assert doctor.locator("#findings-table tbody tr").count() == 14
    assert doctor.locator("#placeholder-flag").is_visible()
    assert doctor.locator("#placeholder-flag").evaluate(
        "el => getComputedStyle(el).backgroundColor") == "rgb(163, 0, 11)"
    assert doctor.locator("#toggle-heatmap").is_disabled()
    assert "no heat map from this model" in doctor.inner_text("#viewer")
    assert doctor.locator(".ai-note").count() >= 3

    before = _probe(doctor)
    doctor.click("#zoom-in")
    zoomed = _probe(doctor)
    assert zoomed["zoom"] > before["zoom"] and zoomed["transform"] != before["transform"]
    assert zoomed["sum"] != before["sum"]
    box = doctor.locator("#xray").bounding_box()
    assert box is not None
    doctor.mouse.move(box["x"] + 200, box["y"] + 200)
    doctor.mouse.down()
    doctor.mouse.move(box["x"] + 260, box["y"] + 230, steps=4)
    doctor.mouse.up()
    panned = _probe(doctor)
    assert panned["panX"] != zoomed["panX"] and panned["transform"] != zoomed["transform"]
    doctor.evaluate("""() => { const ww = document.getElementById('ww');
        ww.value = 60; ww.dispatchEvent(new Event('input')); }""")
    windowed = _probe(doctor)
    assert windowed["window"] == 60 and windowed["sum"] != panned["sum"]
    screenshot(doctor, "er-case-view")

    doctor.locator("#decision-region button.accept").click()
    doctor.wait_for_url(f"{live_hub.url}/er/bos-mgh/cases/{record.case_id}")
    assert "accepted" in doctor.inner_text("#offer-state")
    done = ambulance.wait_for_decision(record.case_id, timeout=10)
    assert done.decision is not None and done.decision.hospital_id == "bos-mgh"


def _farthest_from_mgh() -> str:
    def distance(lat: float, lon: float) -> float:
        return math.hypot(lat - MGH[0], (lon - MGH[1]) * math.cos(math.radians(MGH[0])))

    return max(read_registry(SAMPLE_REGISTRY), key=lambda h: distance(h.lat, h.lon)).id


def test_another_ers_doctor_neither_hears_of_nor_sees_the_case(
        live_hub: LiveHub, new_page: Callable[[], Any], mqtt_settings: MqttSettings,
        uid: str) -> None:
    other = _farthest_from_mgh()
    doctor = new_page()
    sign_in(doctor, live_hub, f"er-{other}", f"/er/{other}")
    doctor.evaluate("""() => { window.__heard = [];
        new EventSource('/api/events').onmessage = m => window.__heard.push(m.data); }""")
    case_id, _ = send_sample_case(mqtt_settings, uid)
    assert wait_until(lambda: len(live_hub.offered(case_id)) == 3)
    offered = live_hub.offered(case_id)
    assert other not in offered
    time.sleep(1.5)  # three polls of the event streams
    heard = doctor.evaluate("window.__heard.join('\\n')")
    assert case_id not in heard
    assert doctor.locator(f"tr[data-case='{case_id}']").count() == 0
    for path in (f"/er/{other}/cases/{case_id}", f"/er/{offered[0]}/cases/{case_id}",
                 f"/er/{offered[0]}", f"/api/cases/{case_id}"):
        response = doctor.goto(f"{live_hub.url}{path}")
        assert response is not None and response.status == 404, path
    doctor.goto(f"{live_hub.url}/cases")
    assert doctor.locator(f"#history tr[data-case='{case_id}']").count() == 0

    nearest = new_page()
    sign_in(nearest, live_hub, f"er-{offered[0]}", f"/er/{offered[0]}")
    assert nearest.locator(f"#open-offers tr[data-case='{case_id}']").count() == 1


def test_the_console_speaks_korean(live_hub: LiveHub, new_page: Callable[[], Any],
                                   mqtt_settings: MqttSettings, uid: str) -> None:
    case_id, _ = send_sample_case(mqtt_settings, uid)
    assert wait_until(lambda: "bos-mgh" in live_hub.offered(case_id))
    doctor = new_page()
    sign_in(doctor, live_hub, "er-bos-mgh", "/er/bos-mgh")
    assert "AI result, not for clinical use" in doctor.inner_text(".notice")
    doctor.click("#lang-toggle")
    doctor.wait_for_url(f"{live_hub.url}/er/bos-mgh")
    assert doctor.locator("html").get_attribute("lang") == "ko"
    assert "AI 분석 결과이며 임상 진단용이 아닙니다" in doctor.inner_text(".notice")
    assert "들어온 이송 요청" in doctor.inner_text("main")
    assert "수용" in doctor.locator(f"tr[data-case='{case_id}'] button.accept").inner_text()
    screenshot(doctor, "er-console-ko")
    doctor.click("#lang-toggle")
    doctor.wait_for_url(f"{live_hub.url}/er/bos-mgh")
    assert "Incoming offers" in doctor.inner_text("main")


HEAT_MAP_LABEL = "AI heat map — where the model's evidence is, not a diagnosis; not for clinical use"


def test_the_case_view_shows_heat_maps_boxes_the_model_and_why_this_triage(
        live_hub: LiveHub, new_page: Callable[[], Any], mqtt_settings: MqttSettings,
        uid: str) -> None:
    case_id, ambulance_id = send_sample_case(mqtt_settings, uid, "h", heat_maps=True)
    sent = heat_map_diagnosis(ambulance_id)
    assert wait_until(lambda: len(live_hub.offered(case_id)) == 3)
    first, *_ = live_hub.offered(case_id)
    doctor = new_page()
    sign_in(doctor, live_hub, f"er-{first}", f"/er/{first}/cases/{case_id}")

    # the top-3 findings, each with its heat map, loaded, labelled as AI evidence
    figures = doctor.locator("#ai-evidence figure.heatmap")
    assert [figures.nth(i).get_attribute("data-finding") for i in range(figures.count())] == [
        str(f) for f in sent.top3]
    doctor.wait_for_function("""() => [...document.querySelectorAll('#ai-evidence figure img')]
        .every(img => img.complete && img.naturalWidth > 0)""", timeout=10_000)
    for i in range(3):
        assert HEAT_MAP_LABEL in figures.nth(i).inner_text()
    assert "70%" in figures.first.inner_text() and "suspected" in figures.first.inner_text()

    # the 14 findings: suspected ones with their measured sensitivity and specificity, the rest muted
    suspected = doctor.locator("#findings-table tr.suspected")
    assert suspected.first.get_attribute("data-finding") == "Pneumothorax"
    assert "suspected" in suspected.first.inner_text() and "55% / 95%" in suspected.first.inner_text()
    assert doctor.locator("#findings-table tr.muted[data-finding=Atelectasis]").count() == 1
    assert "suspected" not in doctor.inner_text("#findings-table tr[data-finding=Atelectasis]")
    assert "operating point" in doctor.inner_text("#suspected-note")
    natural = figures.first.locator("img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [267, 320]  # 320 px on the long side, the image's aspect ratio

    # the boxes over the thumbnail, where the diagnosis puts them, with their source
    boxes = doctor.locator("#regions-figure .region")
    assert boxes.count() == 2
    heat_box = doctor.locator("#regions-figure .region[data-source=heatmap]")
    assert heat_box.inner_text().split() == "Pneumothorax 70% from the heat map".split()
    assert doctor.locator("#regions-figure .region[data-source=detector]").inner_text().split() == [
        "Pneumonia", "65%", "from", "the", "detector"]
    assert doctor.locator("#regions-list li").all_inner_texts() == [
        "Pneumothorax 70% · from the heat map", "Pneumonia 65% · from the detector"]
    frame = doctor.locator("#regions-figure .frame").bounding_box()
    box = heat_box.bounding_box()
    assert frame is not None and box is not None
    region = sent.regions[0]
    assert abs(box["x"] - frame["x"] - region.x1 * frame["width"]) < 2
    assert abs(box["y"] - frame["y"] - region.y1 * frame["height"]) < 2
    assert abs(box["width"] - (region.x2 - region.x1) * frame["width"]) < 2
    assert "AI result, not for clinical use" in doctor.inner_text("#regions-figure")

    # the model, its short digest; the triage and why, as a list
    model = doctor.inner_text("#model-info")
    assert TEST_MODEL.name in model and TEST_MODEL.version in model
    assert TEST_MODEL.sha256 is not None and TEST_MODEL.sha256[:12] in model
    assert doctor.locator("#placeholder-flag").count() == 0
    reasons = doctor.locator("#reasons li").all_inner_texts()
    assert reasons == sent.triage.reasons
    assert reasons[0].startswith("Pneumothorax suspected by the AI (0.70, operating point 0.50; measured out "
                                 "of fold: sensitivity 55%, specificity 95%) -> level 2")
    assert doctor.get_attribute("#triage-source", "data-reassessed") == "false"
    assert "image alone (no vital signs yet)" in doctor.inner_text("#triage-source")  # none were sent

    # the viewer lays a finding's heat map over the X-ray
    assert doctor.locator("#toggle-heatmap").is_enabled()
    before = _probe(doctor)
    doctor.check("#toggle-heatmap")
    doctor.wait_for_function("window.ghViewer.state().heatmap === true")
    doctor.wait_for_function(f"window.ghViewer.checksum() !== {before['sum']}", timeout=5_000)
    doctor.evaluate("document.getElementById('ai-evidence').scrollIntoView()")
    screenshot(doctor, "er-case-heatmaps")

    # vitals from the ambulance, triage re-assessed there: the new level and
    # its reasons arrive live, without a reload
    vitals = Vitals(taken_at=datetime.now(UTC), spo2_pct=84, resp_rate=30, heart_rate=124,
                    systolic_bp=96, avpu="A", supplemental_o2=True)
    update = CaseUpdateV1(ambulance_id=ambulance_id, action="vitals", vitals=vitals,
                          triage=assess(sent.findings, vitals))
    assert update.triage is not None and update.triage.level == 1
    sender = PahoCommunicator(mqtt_settings, client_id=f"ui-update-{uid}")
    sender.start()
    sender.publish(topics.CASE_UPDATE.topic(ambulance_id=ambulance_id, case_id=case_id),
                   encode(Envelope.wrap(update, sender=ambulance_id, case_id=case_id)))
    sender.stop()
    doctor.locator("#triage-source[data-reassessed=true]").wait_for(timeout=10_000)
    assert same_document(doctor)
    assert doctor.locator("#reasons li").all_inner_texts() == update.triage.reasons
    assert any(r.startswith("SpO2 84% below 90% -> level 1") for r in update.triage.reasons)
    assert "Triage 1" in doctor.inner_text("#triage h2")

    # another ER's doctor gets no heat map of this case
    other = next(h.id for h in read_registry(SAMPLE_REGISTRY)
                 if h.id not in live_hub.offered(case_id))
    stranger = new_page()
    sign_in(stranger, live_hub, f"er-{other}", f"/er/{other}")
    mine = doctor.request.get(f"{live_hub.url}/api/cases/{case_id}/overlays/Pneumothorax.jpg")
    assert mine.status == 200 and mine.headers["content-type"] == "image/jpeg"
    theirs = stranger.request.get(f"{live_hub.url}/api/cases/{case_id}/overlays/Pneumothorax.jpg")
    assert theirs.status == 404
