"""Fixtures for the console tests: a hub served by a real uvicorn in a thread
(with its runtime, to look at the database), a real edge agent, browser
contexts at 1280x800, and signing in through the real login page."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlmodel import Session, col, select

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub.api import create_app
from hospital_hub.auth import create_user
from hospital_hub.models import Offer, UserCreate
from hospital_hub.registry import read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from shared import topics
from shared.broker import free_port
from shared.messages import Envelope, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.services import wait_until

PASSWORD = "correct horse battery"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MGH = (42.3631, -71.0686)
"""Downtown Boston, beside Massachusetts General Hospital."""


@dataclass
class LiveHub:
    """A running hub: its address and its runtime."""

    url: str
    runtime: HubRuntime

    def offered(self, case_id: str) -> list[str]:
        """The hospitals the case is offered to, by rank."""
        with Session(self.runtime.engine) as session:
            return [o.hospital_id for o in session.exec(
                select(Offer).where(Offer.case_id == case_id).order_by(col(Offer.rank))).all()]


@pytest.fixture
def live_hub(tmp_path: Path, mqtt_settings: MqttSettings, uid: str) -> Iterator[LiveHub]:
    """The hub with a dispatcher and one doctor per sample ER (``er-<id>``)."""
    runtime = HubRuntime(load_hub_settings(hub_id=f"ui-{uid}", mqtt=mqtt_settings,
                                           database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           log_config=None, access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=15)
        users = [UserCreate(username="dispatcher", role="dispatcher", password=PASSWORD)]
        users += [UserCreate(username=f"er-{h.id}", role="er_doctor", hospital_id=h.id,
                             password=PASSWORD) for h in read_registry(SAMPLE_REGISTRY)]
        for user in users:
            create_user(runtime.engine, user)
        yield LiveHub(f"http://127.0.0.1:{port}", runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def ambulance(mqtt_settings: MqttSettings, uid: str) -> Iterator[EdgeAgent]:
    """A real edge agent in an ambulance downtown, near MGH."""
    agent = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                         lat=MGH[0], lon=MGH[1]))
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Pages in browser contexts of their own (own cookies), 1280x800."""
    contexts = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, hub: LiveHub, username: str, then: str) -> None:
    """Open ``then``, be sent to the login page, sign in, land on ``then`` with live updates on."""
    page.goto(f"{hub.url}{then}")
    page.wait_for_url(f"{hub.url}/login**")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_url(f"{hub.url}{then}")
    wait_live(page)


def wait_live(page: Any) -> None:
    """Wait until the page's event stream is open; mark the document to detect a reload."""
    page.wait_for_function("document.body.dataset.sse === 'open'", timeout=10_000)
    page.evaluate("window.__sameDocument = true")


def same_document(page: Any) -> bool:
    """True if the page has not navigated or reloaded since :func:`wait_live`."""
    return bool(page.evaluate("window.__sameDocument === true"))


def send_sample_case(mqtt_settings: MqttSettings, uid: str, suffix: str = "s") -> tuple[str, str]:
    """Publish the sample triage-1 diagnosis (pneumothorax, a box, vitals, a
    patient) as another ambulance near MGH; returns (case id, ambulance id)."""
    ambulance_id = f"amb-{uid}-{suffix}"
    case_id = f"20261125T120000Z-{uid}{suffix}"
    sender = PahoCommunicator(mqtt_settings, client_id=f"ui-edge-{uid}-{suffix}")
    sender.start()
    envelope = Envelope.wrap(samples.diagnosis(ambulance_id=ambulance_id, lat=MGH[0], lon=MGH[1]),
                             sender=ambulance_id, case_id=case_id)
    sender.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance_id, case_id=case_id),
                   encode(envelope))
    sender.stop()
    return case_id, ambulance_id


def screenshot(page: Any, name: str) -> None:
    """Save the viewport (1280x800) to docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
