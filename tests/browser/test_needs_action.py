"""The dispatch board's "needs action" queue with "re-offer now", a bounded
board, the calm triage 1-2 pulse, and the ER console's expected arrivals with
a live ETA, in headless Chromium against a real hub (uvicorn) and Mosquitto."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from hospital_hub.registry import read_registry
from hospital_hub.settings import SAMPLE_REGISTRY
from shared import topics
from shared.messages import Envelope, Position, PositionV1, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.browser.conftest import (
    LiveHub,
    same_document,
    screenshot,
    send_sample_case,
    sign_in,
    wait_live,
)
from tests.services import wait_until

pytestmark = pytest.mark.browser
HOSPITALS = [h.id for h in read_registry(SAMPLE_REGISTRY)]


def _accepted_cases(hub: LiveHub, count: int, uid: str) -> None:
    """``count`` cases through the hub's own service layer, each accepted."""
    for n in range(count):
        case_id = f"20261125T110000Z-{uid}-{n:03d}"
        hub.runtime.cases.receive_diagnosis(Envelope.wrap(
            samples.diagnosis(ambulance_id=f"amb-{uid}-h"), sender=f"amb-{uid}-h", case_id=case_id))
        hub.runtime.cases.decide(case_id, hub.offered(case_id)[0], "accept", decided_by="test")


def test_needs_action_stays_in_view_and_dispatch_re_offers_a_case_no_er_took(
        live_hub: LiveHub, new_page: Callable[[], Any], mqtt_settings: MqttSettings,
        uid: str) -> None:
    _accepted_cases(live_hub, 50, uid)
    for hospital_id in HOSPITALS:
        live_hub.runtime.live.set_capacity(hospital_id, er_beds_free=0, icu_beds_free=0,
                                           accepting=False, source="console")
    board = new_page()
    sign_in(board, live_hub, "dispatcher", "/")
    case_id, _ = send_sample_case(mqtt_settings, uid)  # triage 1, and no ER accepts ambulances
    item = board.locator(f"#needs-action .action-item[data-case='{case_id}']")
    item.wait_for(timeout=5_000)
    assert "no ER accepted" in item.inner_text() and same_document(board)

    height = board.evaluate("document.documentElement.scrollHeight")
    assert height < 2_600, f"the board grew to {height} px with 50 accepted cases"
    for selector in ("#needs-action", "#map"):
        box = board.locator(selector).bounding_box()
        assert box is not None and box["y"] < 800, f"{selector} is below the first screen"
    row = board.locator(f"#cases tr[data-case='{case_id}']")
    assert row.evaluate("el => getComputedStyle(el).animationName") == "none"
    assert row.evaluate("el => getComputedStyle(el).opacity") == "1"
    badge = item.locator(".triage-badge.pulse")
    assert badge.evaluate("el => getComputedStyle(el).animationName") == "gh-badge"
    screenshot(board, "dispatch-needs-action")

    for hospital_id in HOSPITALS:
        live_hub.runtime.live.set_capacity(hospital_id, er_beds_free=2, icu_beds_free=0,
                                           accepting=True, source="console")
    item.locator("button.reoffer-button").click()
    board.wait_for_url("**/?reoffer=offered**")
    assert "Offered again" in board.inner_text("#reoffer-result")
    assert wait_until(lambda: len(live_hub.offered(case_id)) == 3)
    board.locator(f"#cases tr[data-case='{case_id}'][data-status='offered']").wait_for(timeout=5_000)

    board.emulate_media(reduced_motion="reduce")
    calm = board.locator(f"#needs-action .action-item[data-case='{case_id}'] .triage-badge")
    assert calm.evaluate("el => getComputedStyle(el).animationName") == "none"


def test_expected_arrivals_show_a_live_eta_clock_time_and_what_set_the_triage(
        live_hub: LiveHub, new_page: Callable[[], Any], mqtt_settings: MqttSettings,
        uid: str) -> None:
    doctor = new_page()
    sign_in(doctor, live_hub, "er-bos-mgh", "/er/bos-mgh")
    case_id, ambulance_id = send_sample_case(mqtt_settings, uid)
    offer = doctor.locator(f"#open-offers tr[data-case='{case_id}']")
    offer.wait_for(timeout=5_000)
    assert "set by" in offer.inner_text() and "age" in offer.inner_text()
    assert offer.evaluate("el => getComputedStyle(el).opacity") == "1"
    offer.locator("button.accept").click()  # a form post: the console loads again
    arrival = doctor.locator(f"#arrivals tr[data-case='{case_id}']")
    arrival.wait_for(timeout=5_000)
    wait_live(doctor)

    def eta_text() -> str:
        return str(arrival.locator(".arrival").inner_text())

    assert re.search(r"arrives about \d\d:\d\d \((in \d+ min|under 1 min|arriving)\)", eta_text())
    assert "set by" in arrival.inner_text() and "SpO₂" in arrival.inner_text()
    first = arrival.locator(".arrival").get_attribute("data-arrives")

    far = PahoCommunicator(mqtt_settings, client_id=f"pos-{uid}")
    far.start()
    try:  # the ambulance reports a position 12 km out: the ETA moves, the page is not reloaded
        far.publish(topics.AMBULANCE_POSITION.topic(ambulance_id=ambulance_id), encode(
            Envelope.wrap(PositionV1(position=Position(lat=42.46, lon=-71.07)),
                          sender=ambulance_id)))
    finally:
        far.stop()
    doctor.wait_for_function(
        f"document.querySelector(\"#arrivals tr[data-case='{case_id}'] .arrival\")"
        f".dataset.arrives !== {first!r}", timeout=10_000)
    assert same_document(doctor)
    minutes = int(re.search(r"in (\d+) min", eta_text()).group(1))  # type: ignore[union-attr]
    assert minutes >= 10, eta_text()
    screenshot(doctor, "er-expected-arrivals")

    view = new_page()
    sign_in(view, live_hub, "er-bos-mgh", f"/er/bos-mgh/cases/{case_id}")
    assert re.search(r"arrives about \d\d:\d\d \(in \d+ min\)", view.inner_text("#live-eta"))
