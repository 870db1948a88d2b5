"""Fixtures for the console tests: a hub served by a real uvicorn in a thread
(with its runtime, to look at the database), a real edge agent, browser
contexts at 1280x800, signing in through the real login page, and a
diagnosis with heat maps (real small JPEGs from synthetic maps)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image
from sqlmodel import Session, col, select

from edge_agent.agent import EdgeAgent
from edge_agent.heatmap import heat_map, overlay_jpeg
from edge_agent.settings import PLACEHOLDER, load_edge_settings
from edge_agent.triage import assess
from hospital_hub.api import create_app
from hospital_hub.auth import create_user
from hospital_hub.models import Offer, UserCreate
from hospital_hub.registry import read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from shared import topics
from shared.broker import free_port
from shared.findings import Finding
from shared.messages import DiagnosisV1, Envelope, ModelInfo, Overlay, Region, encode
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
    """A real edge agent in an ambulance downtown, near MGH, running the
    placeholder classifier (the tests check that its results are flagged)."""
    agent = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                         lat=MGH[0], lon=MGH[1], model=PLACEHOLDER))
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


def send_sample_case(mqtt_settings: MqttSettings, uid: str, suffix: str = "s",
                     heat_maps: bool = False, **changes: Any) -> tuple[str, str]:
    """Publish the sample triage-1 diagnosis (pneumothorax, a box, vitals, a
    patient) as another ambulance near MGH, or with ``heat_maps`` the
    triage-2 :func:`heat_map_diagnosis`, with ``changes`` to its fields;
    returns (case id, ambulance id)."""
    ambulance_id = f"amb-{uid}-{suffix}"
    case_id = f"20261125T120000Z-{uid}{suffix}"
    sender = PahoCommunicator(mqtt_settings, client_id=f"ui-edge-{uid}-{suffix}")
    sender.start()
    payload = (heat_map_diagnosis(ambulance_id, lat=MGH[0], lon=MGH[1]) if heat_maps
               else samples.diagnosis(ambulance_id=ambulance_id, lat=MGH[0], lon=MGH[1]))
    if changes:
        payload = type(payload).model_validate({**dict(payload), **changes})
    envelope = Envelope.wrap(payload, sender=ambulance_id, case_id=case_id)
    sender.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance_id, case_id=case_id),
                   encode(envelope))
    sender.stop()
    return case_id, ambulance_id


def screenshot(page: Any, name: str) -> None:
    """Save the viewport (1280x800) to docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


TEST_MODEL = ModelInfo(name="test-cam-model", version="0.0-test",
                       sha256=hashlib.sha256(b"not a model: a test fixture").hexdigest())
"""What the heat-map diagnosis names as its model (a test fixture, not a model)."""
HEAT_SPOTS: dict[Finding, tuple[float, float]] = {
    Finding.PNEUMOTHORAX: (0.28, 0.22), Finding.PNEUMONIA: (0.7, 0.62),
    Finding.PLEURAL_THICKENING: (0.5, 0.85)}
"""Where each of the sample's top 3 findings has its synthetic heat (x, y, 0..1)."""


def _jpeg(pixels: np.ndarray, quality: int = 80) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def heat_map_diagnosis(ambulance_id: str, lat: float = MGH[0], lon: float = MGH[1]) -> DiagnosisV1:
    """The sample diagnosis as a model with class activation maps sends it: a
    synthetic grey image (not an X-ray) as a real JPEG thumbnail, one heat-map
    overlay per top-3 finding made by the edge's own blending code
    (:mod:`edge_agent.heatmap`) from a synthetic map, a box from the heat map and
    one from a detector, a model with its sha256, and the triage the edge's rules
    give from the image alone (triage 2 for the pneumothorax; no vitals yet)."""
    y, x = np.mgrid[0:240, 0:200]
    pixels = (60 + 120 * np.exp(-(((x - 100) / 70.0) ** 2 + ((y - 110) / 90.0) ** 2))
              + 20 * np.sin(y / 9.0)).clip(0, 255).astype(np.uint8)
    base = samples.diagnosis(ambulance_id=ambulance_id, lat=lat, lon=lon)
    gy, gx = np.mgrid[0:12, 0:10]
    overlays, boxes = [], []
    for finding in base.top3:
        spot_x, spot_y = HEAT_SPOTS[finding]
        cam = np.exp(-(((gx + 0.5) / 10 - spot_x) ** 2 + ((gy + 0.5) / 12 - spot_y) ** 2) / 0.01)
        heat = heat_map(finding, cam)
        overlays.append(Overlay(finding=finding, jpeg=overlay_jpeg(pixels, heat),
                                peak_x=heat.peak_x, peak_y=heat.peak_y))
        boxes.append(heat.box)
    score = {s.finding: s.probability for s in base.findings}
    x1, y1, x2, y2 = boxes[0]
    regions = [Region(finding=Finding.PNEUMOTHORAX, x1=x1, y1=y1, x2=x2, y2=y2,
                      score=score[Finding.PNEUMOTHORAX], source="heatmap"),
               Region(finding=Finding.PNEUMONIA, x1=0.55, y1=0.5, x2=0.85, y2=0.75,
                      score=score[Finding.PNEUMONIA], source="detector")]
    # as a model with operating points sends them: each with its measured sensitivity and specificity
    findings = [s.model_copy(update={"sensitivity": 0.55, "specificity": 0.95}) for s in base.findings]
    fields = {name: getattr(base, name) for name in type(base).model_fields}
    fields.update(image=base.image.model_copy(update={
        "width": 200, "height": 240, "format": "png", "thumbnail_jpeg": _jpeg(pixels)}),
        model=TEST_MODEL, overlays=overlays, regions=regions, vitals=None, findings=findings,
        triage=assess(findings, None))
    return DiagnosisV1.model_validate(fields)
