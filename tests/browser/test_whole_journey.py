"""Issue 7's journey in one run, across both web apps: a crew uploads an X-ray
on the ambulance's page, the right ER sees it live within 2 s, the doctor
accepts, the crew page shows that ER; another ER's doctor cannot see the case;
the dispatch board and its history show it. Real hub, broker and edge agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.web import CrewServer
from shared.broker import free_port
from tests.browser.conftest import LiveHub, screenshot, sign_in
from tests.integration.conftest import xray  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def crew_page(ambulance: EdgeAgent) -> Iterator[str]:
    """The crew page of the ambulance (downtown, beside MGH)."""
    server = CrewServer(ambulance, port=free_port())
    server.start()
    yield server.url
    server.stop()


def test_from_the_ambulance_to_the_er_and_back(
        live_hub: LiveHub, crew_page: str, new_page: Any, xray: Path) -> None:  # noqa: F811
    doctor, other, dispatcher, crew = new_page(), new_page(), new_page(), new_page()
    sign_in(doctor, live_hub, "er-bos-mgh", "/er/bos-mgh")
    sign_in(other, live_hub, "er-cam-cha", "/er/cam-cha")
    sign_in(dispatcher, live_hub, "dispatcher", "/")

    crew.goto(f"{crew_page}/")
    crew.set_input_files("#xray", str(xray))
    crew.click("#send-case")
    crew.wait_for_url(f"{crew_page}/cases/**")
    case_id = crew.inner_text("#case-id").strip()

    # The nearest ER's console shows it within 2 s, without a reload.
    row = doctor.locator(f"#open-offers tr[data-case='{case_id}']")
    row.wait_for(timeout=2_000)
    assert live_hub.offered(case_id)[0] == "bos-mgh"
    screenshot(doctor, "journey-er-offer")

    # Another hospital's doctor sees nothing of it, not even by its address.
    assert other.locator(f"tr[data-case='{case_id}']").count() == 0
    response = other.goto(f"{live_hub.url}/er/cam-cha/cases/{case_id}")
    assert response is not None and response.status == 404
    response = other.goto(f"{live_hub.url}/api/cases/{case_id}")
    assert response is not None and response.status == 404

    # The doctor accepts; the crew page shows that ER and the ETA by itself.
    row.locator("a.case-link").click()
    doctor.wait_for_url(f"{live_hub.url}/er/bos-mgh/cases/{case_id}")
    doctor.locator("#decision-region button.accept").click()
    doctor.wait_for_url(f"{live_hub.url}/er/bos-mgh/cases/{case_id}")
    crew.locator("#accepted-hospital").wait_for(timeout=10_000)
    assert "Massachusetts General Hospital" in crew.inner_text("#accepted-hospital")
    assert "min" in crew.inner_text("#eta")
    screenshot(crew, "journey-crew-accepted")

    # The dispatch board and the history show the whole story.
    board_row = dispatcher.locator(f"tr[data-case='{case_id}']")
    board_row.wait_for(timeout=5_000)
    dispatcher.goto(f"{live_hub.url}/cases")
    history = dispatcher.locator(f"#history tr[data-case='{case_id}']")
    history.wait_for(timeout=5_000)
    assert "accepted" in history.inner_text()
    record = dispatcher.goto(f"{live_hub.url}/api/cases/{case_id}/record.json")
    assert record is not None and record.status == 200
    kinds = [event["kind"] for event in record.json()["events"]]
    assert kinds[:2] == ["triage", "created"]
    assert kinds[-2:] == ["accepted", "pacs_skipped"]  # the sample registry names no PACS
