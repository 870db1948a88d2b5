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


@pytest.fixture
def edge(mqtt_settings: MqttSettings, uid: str) -> Iterator[EdgeAgent]:
    """An ambulance downtown, near Massachusetts General Hospital."""
    agent = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                         lat=42.3631, lon=-71.0686))
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    page = browser.new_page()
    yield page
    page.close()


def _nearest_er_console(page, hub_url: str, case_id: str):  # type: ignore[no-untyped-def]
    """Open the dispatch board, find the case, and go to its first ER's console."""
    page.goto(f"{hub_url}/")
    row = page.locator(f"#cases tr[data-case='{case_id}']")
    row.wait_for(timeout=10_000)
    nearest = row.locator("a.offer-link").first.inner_text()
    page.goto(f"{hub_url}/er/{nearest}")
    offer = page.locator(f"#open-offers tr[data-case='{case_id}']")
    offer.wait_for(timeout=10_000)
    return nearest, row, offer


def test_er_doctor_accepts_from_the_console_and_the_ambulance_is_told(
        page, hub_url: str, edge: EdgeAgent, xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    record = edge.submit(xray)
    page.goto(f"{hub_url}/")
    row = page.locator(f"#cases tr[data-case='{record.case_id}']")
    row.wait_for(timeout=10_000)
    assert "AI result, not for clinical use" in page.inner_text(".notice")
    assert "placeholder model, not a diagnosis" in row.inner_text()

    nearest, _, offer = _nearest_er_console(page, hub_url, record.case_id)
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


def test_a_decline_needs_a_reason_and_then_moves_the_case_on(
        page, hub_url: str, edge: EdgeAgent, xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    record = edge.submit(xray)
    nearest, _, offer = _nearest_er_console(page, hub_url, record.case_id)
    offer.locator("button.decline").click()
    assert "Give a reason to decline" in page.locator("#error").inner_text()
    offer = page.locator(f"#open-offers tr[data-case='{record.case_id}']")
    offer.locator("input[name=reason]").fill("CT out of order")
    offer.locator("button.decline").click()
    page.wait_for_url(f"{hub_url}/er/{nearest}")
    closed = page.locator(f"#closed-offers tr[data-case='{record.case_id}']")
    assert "declined" in closed.inner_text() and "CT out of order" in closed.inner_text()


def test_an_er_sets_its_capacity_and_dispatch_sees_it(
        page, hub_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{hub_url}/er/bos-bmc")
    form = page.locator("#capacity")
    form.locator("input[name=er_beds_free]").fill("0")
    form.locator("input[name=icu_beds_free]").fill("0")
    form.locator("input[name=accepting]").uncheck()
    form.locator("button").click()
    page.wait_for_url(f"{hub_url}/er/bos-bmc")
    page.goto(f"{hub_url}/")
    row = page.locator("#hospitals tr[data-hospital='bos-bmc']")
    assert "0 / 7" in row.inner_text() and "NO" in row.inner_text()
    assert "not current" in page.locator("#hospitals tr[data-hospital='bos-mgh']").inner_text()
