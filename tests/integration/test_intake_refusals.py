"""The out-of-distribution refusal rate, end to end on a real Mosquitto and on
SQLite and PostgreSQL: an edge agent diagnoses a chest X-ray and refuses a
photograph and a truncated file, publishes its counts (retained, on
ambulance/<id>/intake), and the hub shows the rate per model version and
ambulance on /performance, in /api/performance and in /metrics; the counts
survive the edge's restart, and its offline will still reaches the hub."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub.api import create_app
from hospital_hub.auth import SESSION_COOKIE, create_user
from hospital_hub.field_stats import wilson
from hospital_hub.models import Ambulance, UserCreate
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.errors import CorruptImageError, NotChestRadiographError
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.images import chest_like_png
from tests.services import wait_until

PASSWORD = "a long test password"


@dataclass
class Hub:
    client: TestClient
    runtime: HubRuntime
    cookie: str

    def get(self, path: str, lang: str = "en") -> Any:
        self.client.cookies.clear()
        return self.client.get(path, headers={"Cookie": f"{SESSION_COOKIE}={self.cookie}; lang={lang}"},
                               follow_redirects=False)

    def device(self, ambulance_id: str) -> dict[str, Any] | None:
        rows = self.get("/api/performance").json()["refusals"]["devices"]
        return next((d for d in rows if d["ambulance_id"] == ambulance_id), None)


@pytest.fixture
def hub(database_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[Hub]:
    runtime = HubRuntime(load_hub_settings(hub_id=f"intake-{uid}", database_url=database_url,
                                           mqtt=mqtt_settings, secret_key="k" * 32))
    with TestClient(create_app(runtime)) as client:
        create_user(runtime.engine, UserCreate(username="disp", role="dispatcher", password=PASSWORD))
        response = client.post("/login", data={"username": "disp", "password": PASSWORD},
                               follow_redirects=False)
        assert response.status_code == 303
        yield Hub(client, runtime, response.cookies[SESSION_COOKIE])


def _agent(mqtt: MqttSettings, ambulance_id: str, state: Path) -> EdgeAgent:
    agent = EdgeAgent(load_edge_settings(ambulance_id=ambulance_id, mqtt=mqtt, state_dir=state,
                                         model="placeholder", position_interval_s=60.0))
    agent.start()
    return agent


def _photo(path: Path) -> Path:
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")
    Image.fromarray(np.asarray(data.camera())).save(path)
    return path


def test_the_hub_shows_the_refusal_rate_that_the_edge_reports(
        hub: Hub, mqtt_settings: MqttSettings, uid: str, tmp_path: Path) -> None:
    ambulance = f"amb-{uid}"
    chest = chest_like_png(tmp_path / "chest.png")
    photo = _photo(tmp_path / "camera.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(chest.read_bytes()[:500])
    state = tmp_path / "edge-state"

    agent = _agent(mqtt_settings, ambulance, state)
    try:
        agent.submit(chest)
        with pytest.raises(NotChestRadiographError):
            agent.submit(photo)
        with pytest.raises(CorruptImageError):
            agent.submit(truncated)
        model = f"{agent.pipeline.classifier.info.name} {agent.pipeline.classifier.info.version}"
        assert wait_until(lambda: (hub.device(ambulance) or {}).get("refused_unreadable") == 1,
                          timeout=30)
    finally:
        agent.stop()

    device = hub.device(ambulance)
    assert device is not None and device["model"] == model
    assert (device["diagnosed"], device["refused_not_chest"], device["refused_unreadable"]) == (1, 1, 1)
    assert device["rate"] == {"value": 0.5, "successes": 1, "total": 2,
                              "ci95": pytest.approx(list(wilson(1, 2)))}
    by_model = next(m for m in hub.get("/api/performance").json()["refusals"]["models"]
                    if m["model"] == model)
    assert by_model["ambulances"] >= 1 and by_model["refused_not_chest"] >= 1

    # The edge's offline status still counts (the counts have their own topic).
    assert wait_until(lambda: not _online(hub, ambulance))
    assert hub.device(ambulance) == device

    # A restart keeps counting from the saved tally and reports it again.
    agent = _agent(mqtt_settings, ambulance, state)
    try:
        assert wait_until(lambda: _online(hub, ambulance))
        with pytest.raises(NotChestRadiographError):
            agent.submit(photo)
        assert wait_until(lambda: (hub.device(ambulance) or {}).get("refused_not_chest") == 2,
                          timeout=30)
    finally:
        agent.stop()
        _clear_retained(mqtt_settings, topics.AMBULANCE_INTAKE.topic(ambulance_id=ambulance), uid)
    device = hub.device(ambulance)
    assert (device["diagnosed"], device["refused_unreadable"]) == (1, 1)  # type: ignore[index]
    low, high = wilson(2, 3)

    page = hub.get("/performance")
    assert page.status_code == 200
    row = page.text.split(f'<tr data-ambulance="{ambulance}"><td>{ambulance}</td><td>{model}</td>')[1]
    row = row.split("</tr>")[0]
    assert f"67% <small>(2/3; 95% CI {low * 100:.0f}–{high * 100:.0f}%)" in row
    assert "<td>1</td><td>2</td><td>1</td>" in row
    korean = hub.get("/performance", lang="ko").text
    assert "거부율 (흉부 X선 아님)" in korean and "(2/3; 95% CI" in korean

    metrics = hub.get("/metrics").text
    assert (f'goldenhour_hub_device_ood_refusal_rate{{ambulance_id="{ambulance}",model="{model}"}} '
            f'{2 / 3}') in metrics
    for outcome, count in (("diagnosed", 1), ("refused_not_chest", 2), ("refused_unreadable", 1)):
        assert (f'goldenhour_hub_edge_intake_images{{ambulance_id="{ambulance}",model="{model}",'
                f'outcome="{outcome}"}} {float(count)}') in metrics
    assert f'goldenhour_hub_ood_refusal_rate{{model="{model}"}}' in metrics


def _clear_retained(mqtt: MqttSettings, topic: str, uid: str) -> None:
    """Other tests share the broker: leave no retained counts behind."""
    client = PahoCommunicator(mqtt, client_id=f"intake-clear-{uid}")
    client.start()
    try:
        client.publish(topic, b"", retain=True)
    finally:
        client.stop()


def _online(hub: Hub, ambulance_id: str) -> bool:
    with Session(hub.runtime.engine) as session:
        row = session.get(Ambulance, ambulance_id)
        return bool(row is not None and row.online)


def test_the_dispatch_board_links_to_the_performance_page(hub: Hub) -> None:
    board = hub.get("/")
    assert board.status_code == 200
    assert '<a id="performance-link" href="/performance">model performance</a>' in board.text
    assert '<a id="performance-link" href="/performance">모델 성능</a>' in hub.get("/", lang="ko").text
    assert hub.get("/performance").status_code == 200
