"""The dispatch board in headless Chromium, with a real broker, hub (uvicorn)
and edge agent: live cases with timers, escalations, the offline map, the
case history, and Korean."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from shared.settings import MqttSettings
from tests.browser.conftest import LiveHub, same_document, screenshot, send_sample_case, sign_in
from tests.integration.conftest import xray  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def test_the_board_shows_cases_live_with_timers_escalations_and_the_map(
        live_hub: LiveHub, ambulance: EdgeAgent, new_page: Callable[[], Any],
        mqtt_settings: MqttSettings, uid: str, xray: Path) -> None:  # noqa: F811
    board = new_page()
    sign_in(board, live_hub, "dispatcher", "/")
    assert board.locator("#map g.er-marker").count() == 8  # the sample registry's ERs

    record = ambulance.submit(xray)
    sent = time.monotonic()
    row = board.locator(f"#cases tr[data-case='{record.case_id}']")
    row.wait_for(timeout=2_000)
    assert time.monotonic() - sent < 2.0 and same_document(board)
    assert re.fullmatch(r"\d+:\d\d", row.locator(".timer").inner_text())
    assert re.fullmatch(r"\d+:\d\d", row.locator(".countdown").inner_text())
    ambulance_marker = board.locator(f"#map g.amb-marker[data-ambulance='{ambulance.ambulance_id}']")
    ambulance_marker.wait_for(timeout=5_000)
    mgh = board.locator("#map g.er-marker[data-hospital='bos-mgh'] circle")
    x, y = float(mgh.get_attribute("cx") or 0), float(mgh.get_attribute("cy") or 0)
    assert 0 <= x <= 640 and 0 <= y <= 400

    critical_id, _ = send_sample_case(mqtt_settings, uid)
    escalated = board.locator(f"#cases tr.escalated[data-case='{critical_id}']")
    escalated.wait_for(timeout=5_000)
    assert critical_id in board.inner_text("#alerts")
    assert "triage 1-2 still waiting for an ER" in board.inner_text("#alerts")
    assert same_document(board)
    screenshot(board, "dispatch-board")
    # The region stays; the map inside it is redrawn on every live refresh.
    board.locator("#map-region").scroll_into_view_if_needed()
    screenshot(board, "dispatch-map")

    board.click("#history-link")
    board.wait_for_url(f"{live_hub.url}/cases")
    for case_id in (record.case_id, critical_id):
        assert board.locator(f"#history tr[data-case='{case_id}']").count() == 1
    board.select_option("select[name=severity]", "1")
    board.click("#filters button")
    board.wait_for_url("**/cases?**severity=1**")
    assert board.locator(f"#history tr[data-case='{critical_id}']").count() == 1
    if record.triage_level > 1:
        assert board.locator(f"#history tr[data-case='{record.case_id}']").count() == 0
    screenshot(board, "case-history")


def test_the_board_speaks_korean(live_hub: LiveHub, new_page: Callable[[], Any]) -> None:
    board = new_page()
    sign_in(board, live_hub, "dispatcher", "/")
    board.click("#lang-toggle")
    board.wait_for_url(f"{live_hub.url}/")
    assert "상황판" in board.inner_text("header")
    assert "AI 분석 결과이며 임상 진단용이 아닙니다" in board.inner_text(".notice")
    assert "응급실" in board.inner_text("main")
    screenshot(board, "dispatch-board-ko")
