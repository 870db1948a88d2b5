"""The hub's web pages in headless Chromium, served by a real uvicorn."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub.api import create_app
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared.broker import free_port
from shared.settings import MqttSettings
from tests.integration.conftest import xray  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def hub_url(tmp_path: Path, mqtt_settings: MqttSettings, uid: str) -> Iterator[str]:
    runtime = HubRuntime(load_hub_settings(hub_id=f"web-{uid}", mqtt=mqtt_settings,
                                           database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert _wait(lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _wait(predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    from tests.services import wait_until

    return wait_until(predicate, timeout=timeout)


def test_er_doctor_accepts_from_the_console_and_the_ambulance_is_told(
        browser, hub_url: str, mqtt_settings: MqttSettings, uid: str, xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                        lat=42.3631, lon=-71.0686))
    edge.start()
    page = browser.new_page()
    try:
        record = edge.submit(xray)
        page.goto(f"{hub_url}/")
        row = page.locator(f"#cases tr[data-case='{record.case_id}']")
        row.wait_for(timeout=10_000)
        assert "AI result, not for clinical use" in page.inner_text(".notice")
        assert "placeholder model, not a diagnosis" in row.inner_text()
        nearest = row.locator("a.offer-link").first.inner_text()

        page.goto(f"{hub_url}/er/{nearest}")
        offer = page.locator(f"#open-offers tr[data-case='{record.case_id}']")
        offer.wait_for(timeout=10_000)
        assert page.locator(f"img[alt='X-ray thumbnail of case {record.case_id}']").evaluate(
            "img => img.complete && img.naturalWidth > 0")
        offer.locator("button.accept").click()
        page.wait_for_url(f"{hub_url}/er/{nearest}")
        closed = page.locator(f"#closed-offers tr[data-case='{record.case_id}'] .state")
        assert closed.inner_text() == "accepted"

        done = edge.wait_for_decision(record.case_id, timeout=10)
        assert done.decision is not None and done.decision.hospital_id == nearest
        page.goto(f"{hub_url}/")
        status = page.locator(f"#cases tr[data-case='{record.case_id}'] .badge")
        assert status.inner_text() == "accepted"
        page.screenshot(path=str(Path(xray).parent / "dispatch.png"), full_page=True)
    finally:
        page.close()
        edge.stop()


def test_decline_with_reason_moves_the_case_on(
        browser, hub_url: str, mqtt_settings: MqttSettings, uid: str, xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings))
    edge.start()
    page = browser.new_page()
    try:
        record = edge.submit(xray)
        page.goto(f"{hub_url}/")
        row = page.locator(f"#cases tr[data-case='{record.case_id}']")
        row.wait_for(timeout=10_000)
        nearest = row.locator("a.offer-link").first.inner_text()
        page.goto(f"{hub_url}/er/{nearest}")
        offer = page.locator(f"#open-offers tr[data-case='{record.case_id}']")
        offer.locator("input[name=reason]").fill("CT out of order")
        offer.locator("button.decline").click()
        page.wait_for_url(f"{hub_url}/er/{nearest}")
        closed = page.locator(f"#closed-offers tr[data-case='{record.case_id}']")
        assert "declined" in closed.inner_text() and "CT out of order" in closed.inner_text()
    finally:
        page.close()
        edge.stop()
