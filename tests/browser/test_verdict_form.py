"""The ER's verdict form on the case view, in headless Chromium with a real
broker and hub: the doctor judges the AI's findings, adds one it missed, and
the verdict is stored with the model; dispatch sees the figures on /performance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, select

from hospital_hub.verdict_models import Verdict
from shared.settings import MqttSettings
from tests.browser.conftest import TEST_MODEL, LiveHub, screenshot, send_sample_case, sign_in
from tests.services import wait_until

pytestmark = pytest.mark.browser


def test_the_doctor_records_a_verdict_and_dispatch_sees_the_figures(
        live_hub: LiveHub, new_page: Callable[[], Any], mqtt_settings: MqttSettings,
        uid: str) -> None:
    case_id, _ = send_sample_case(mqtt_settings, uid, heat_maps=True)
    assert wait_until(lambda: len(live_hub.offered(case_id)) == 3)
    er = live_hub.offered(case_id)[0]
    page = new_page()
    sign_in(page, live_hub, f"er-{er}", f"/er/{er}/cases/{case_id}")
    form = page.locator("#verdict-form")
    form.scroll_into_view_if_needed()
    rows = page.locator("#verdict-table tbody tr")
    assert rows.count() == 14
    suspected = page.locator("#verdict-table tr.suspected")
    assert suspected.count() >= 1
    first = suspected.first.get_attribute("data-finding")
    missed = page.locator("#verdict-table tr:not(.suspected)").last.get_attribute("data-finding")
    assert "AI result, not for clinical use" in page.locator("#verdict").inner_text()

    page.check(f"input[name='j_{first}'][value='confirmed']")
    page.check(f"input[name='j_{missed}'][value='refuted']")
    page.locator(f"#verdict-table tr[data-finding='{missed}']").scroll_into_view_if_needed()
    page.click("#verdict-save")
    page.wait_for_url(f"**/er/{er}/cases/{case_id}#verdict")
    page.locator("#verdict-saved").wait_for()
    assert f"er-{er}" in page.locator("#verdict-saved").inner_text()
    assert page.is_checked(f"input[name='j_{missed}'][value='refuted']")
    page.locator("#verdict").scroll_into_view_if_needed()
    screenshot(page, "er-verdict-form")

    with Session(live_hub.runtime.engine) as session:
        verdict = session.exec(select(Verdict).where(Verdict.case_id == case_id)).one()
    assert verdict.judgements[first] == "confirmed" and verdict.added == [missed]
    assert (verdict.model_name, verdict.model_version) == (TEST_MODEL.name, TEST_MODEL.version)
    assert verdict.model_sha256 == TEST_MODEL.sha256 and verdict.hospital_id == er

    board = new_page()
    board.goto(f"{live_hub.url}/")
    board.fill("#username", "dispatcher")
    board.fill("#password", "correct horse battery")
    board.click("#login button[type=submit]")
    board.wait_for_url(f"{live_hub.url}/")
    board.click("#performance-link")  # the dispatch board's header links to the figures
    board.wait_for_url(f"{live_hub.url}/performance")
    row = board.locator(f"#perf-model-1 tr[data-finding='{first}']")
    assert "100% (1/1; 95% CI" in row.locator("td.ppv").inner_text()
    missed_row = board.locator(f"#perf-model-1 tr[data-finding='{missed}']")
    assert "0% (0/1; 95% CI" in missed_row.locator("td.sensitivity").inner_text()
    screenshot(board, "performance-page")
