"""Live state across the system in headless Chromium, on a Mosquitto of this
module's own (no retained statuses of other tests): the crew page shows the
hub's state from its workers' retained status, and the dispatch board shows
dispatch alerts as the broker delivers them, without a reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.settings import PLACEHOLDER, load_edge_settings
from edge_agent.web import CrewServer
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.broker import MosquittoBroker, free_port
from shared.ids import new_case_id
from shared.messages import DispatchAlertV1
from shared.mqtt import Messenger, PahoCommunicator
from shared.settings import MqttSettings
from tests.browser.conftest import LiveHub, same_document, sign_in
from tests.services import running_mosquitto

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def own_broker() -> Iterator[MosquittoBroker]:
    with running_mosquitto() as broker:
        yield broker


@pytest.fixture
def mqtt_settings(own_broker: MosquittoBroker) -> MqttSettings:
    """This module's broker (overrides the session one, also for ``live_hub``)."""
    return own_broker.mqtt_settings(publish_timeout_s=5.0, connect_timeout_s=5.0)


def _pill(page: Any) -> Any:
    return page.locator("#hub-state")


def test_the_crew_page_shows_whether_the_hub_is_online(
        mqtt_settings: MqttSettings, tmp_path: Path, uid: str, browser: Any) -> None:
    edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                        model=PLACEHOLDER, state_dir=tmp_path / "edge"))
    edge.start()
    server = CrewServer(edge, port=free_port())
    server.start()
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    hub: HubRuntime | None = None
    try:
        page.goto(server.url)
        assert _pill(page).get_attribute("data-state") == "unknown"
        hub = HubRuntime(load_hub_settings(hub_id=f"crew-hub-{uid}", mqtt=mqtt_settings,
                                           database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
        hub.start()
        page.wait_for_selector("#hub-state[data-state='online']", timeout=10_000)
        assert "online" in _pill(page).inner_text()
        hub.stop()  # a clean stop says offline; a crash leaves the broker's last will
        hub = None
        page.wait_for_selector("#hub-state[data-state='offline']", timeout=10_000)
        assert "cases wait here" in _pill(page).inner_text()
    finally:
        context.close()
        if hub is not None:
            hub.stop()
        server.stop()
        edge.stop()


def test_the_board_shows_dispatch_alerts_as_they_come(
        live_hub: LiveHub, new_page: Callable[[], Any], mqtt_settings: MqttSettings,
        uid: str) -> None:
    board = new_page()
    sign_in(board, live_hub, "dispatcher", "/")
    assert board.locator("#no-dispatch-alerts").is_visible()
    board.wait_for_function("Number(document.body.dataset.alertsPolled || 0) >= 1")
    publisher = PahoCommunicator(mqtt_settings.model_copy(update={"session_expiry_s": 0}),
                                 client_id=f"alerts-{uid}")
    publisher.start()
    case_id = new_case_id()
    try:
        Messenger(publisher, sender=f"hub-{uid}").send(
            topics.DISPATCH_ALERT,
            DispatchAlertV1(kind="no_er_available", ambulance_id=f"amb-{uid}", triage_level=1,
                            message="No ER accepted <b>this</b> patient"),
            case_id=case_id)
    finally:
        publisher.stop()
    item = board.locator(f"#dispatch-alert-list li[data-case='{case_id}']")
    item.wait_for(timeout=5_000)
    assert "No ER accepted <b>this</b> patient" in item.inner_text()  # text, never HTML
    assert item.locator("b").count() == 0
    assert not board.locator("#no-dispatch-alerts").is_visible()
    assert same_document(board)
