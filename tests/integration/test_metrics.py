"""Prometheus metrics and health endpoints of the hub and the edge, against a
real Mosquitto and a real database: the counters move when a case flows, and
readiness answers 503 when the broker or the database goes away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from edge_agent.web.app import create_app as create_crew_app
from hospital_hub.api import create_app
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import __version__
from shared.broker import MosquittoBroker
from shared.errors import InputImageError
from shared.settings import MqttSettings
from tests.integration.conftest import accept_rank
from tests.services import create_database, drop_database, running_mosquitto, wait_until

STAGES = ("decode", "ood", "preprocess", "classify", "postprocess", "heatmap", "triage")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, path: str = "/metrics") -> Samples:
    """Fetch and parse Prometheus text: {(sample name, sorted labels): value}."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str,
          **labels: str) -> float:
    """One sample's value; 0 when absent (a labelled counter not yet touched)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


def test_counters_move_when_a_case_flows(make_system, sqlite_url: str, xray: Path) -> None:  # type: ignore[no-untyped-def]
    system = make_system(sqlite_url, policy=accept_rank(1))
    with TestClient(create_app(system.hub, manage_runtime=False)) as hub, \
            TestClient(create_crew_app(system.edge)) as crew:
        before = scrape(hub)
        assert value(before, "goldenhour_hub_broker_connected") == 1
        assert value(before, "goldenhour_hub_database_up") == 1
        assert value(before, "goldenhour_hub_diagnoses_total", result="stored") == 0

        record = system.edge.submit(xray)
        record = system.edge.wait_for_decision(record.case_id, timeout=20)
        assert record.decision is not None and record.decision.status == "accepted"
        # The hub answers the ambulance inside the accept's handler; the counter
        # moves as that handler returns.
        assert wait_until(lambda: value(scrape(hub), "goldenhour_hub_offer_outcomes_total",
                                        outcome="accepted") == 1)

        after = scrape(hub)
        assert value(after, "goldenhour_hub_diagnoses_total", result="stored") == 1
        assert value(after, "goldenhour_hub_diagnoses_total", result="duplicate") == 0
        assert value(after, "goldenhour_hub_messages_total", kind="case_diagnosis") >= 1
        assert value(after, "goldenhour_hub_messages_total", kind="er_decision") >= 1
        assert value(after, "goldenhour_hub_message_handling_seconds_count",
                     kind="case_diagnosis") >= 1
        assert value(after, "goldenhour_hub_message_handling_seconds_sum",
                     kind="case_diagnosis") > 0
        assert ("goldenhour_hub_offers_pending", ()) in after
        assert ("goldenhour_hub_outbox_pending", ()) in after
        assert value(after, "goldenhour_hub_dead_letters_stored") == 0
        assert value(after, "goldenhour_hub_info", hub_id=system.hub.settings.hub_id,
                     version=__version__) == 1

        edge = scrape(crew)
        for stage in STAGES:
            assert value(edge, "goldenhour_edge_stage_seconds_count", stage=stage) == 1, stage
            assert value(edge, "goldenhour_edge_stage_seconds_sum", stage=stage) > 0, stage
        assert value(edge, "goldenhour_edge_diagnosis_seconds_count") == 1
        assert value(edge, "goldenhour_edge_diagnoses_total", outcome="queued") == 1
        assert value(edge, "goldenhour_edge_triage_total", level=str(record.triage_level)) == 1
        assert value(edge, "goldenhour_edge_decisions_total", status="accepted") == 1
        assert value(edge, "goldenhour_edge_broker_connected") == 1
        model = system.edge.pipeline.classifier.info
        assert value(edge, "goldenhour_edge_model_info", model=model.name, version=model.version) == 1
        assert ("goldenhour_edge_outbox_messages", ()) in edge
        assert crew.get("/health/ready").json() == {"status": "ready", "outbox": True,
                                                    "broker_connected": True}
        assert crew.get("/health/live").status_code == 200

        # An unusable file is counted as such, and times nothing.
        bad = xray.with_name("not-an-image.png")
        bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
        with pytest.raises(InputImageError):
            system.edge.submit(bad)
        edge = scrape(crew)
        assert value(edge, "goldenhour_edge_diagnoses_total", outcome="unusable_image") == 1
        assert value(edge, "goldenhour_edge_diagnosis_seconds_count") == 1


def test_expired_offers_are_counted(make_system, sqlite_url: str, xray: Path) -> None:  # type: ignore[no-untyped-def]
    system = make_system(sqlite_url, er_delay_s=30, offer_ttl_s=0.3)  # nobody answers in time
    with TestClient(create_app(system.hub, manage_runtime=False)) as hub:
        system.edge.submit(xray)
        assert wait_until(lambda: value(scrape(hub), "goldenhour_hub_offer_outcomes_total",
                                        outcome="expired") >= 3, timeout=15)


def test_metrics_token_limits_the_scrape(sqlite_url: str, mqtt_settings: MqttSettings,
                                         uid: str) -> None:
    runtime = HubRuntime(load_hub_settings(hub_id=f"metrics-{uid}", database_url=sqlite_url,
                                           mqtt=mqtt_settings, metrics_token="scrape-token"))
    with TestClient(create_app(runtime)) as hub:
        refused = hub.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert hub.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = hub.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
        assert allowed.status_code == 200 and "goldenhour_hub_broker_connected 1.0" in allowed.text
        assert hub.get("/health/ready").status_code == 200


@pytest.fixture
def own_broker() -> Iterator[MosquittoBroker]:
    """A Mosquitto of this test's own, so the test may stop it."""
    with running_mosquitto() as broker:
        yield broker


def _core(ready: dict[str, object]) -> dict[str, object]:
    """Readiness without the load figures (overload, lag, queue, position lane)."""
    return {key: ready[key] for key in ("status", "database", "broker_connected")}


def test_readiness_follows_the_broker(own_broker: MosquittoBroker, sqlite_url: str,
                                      uid: str) -> None:
    settings = own_broker.mqtt_settings(publish_timeout_s=2.0, connect_timeout_s=2.0)
    runtime = HubRuntime(load_hub_settings(hub_id=f"ready-{uid}", database_url=sqlite_url,
                                           mqtt=settings, maintenance_interval_s=0.2))
    edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=settings,
                                        model="placeholder"))
    edge.start()
    try:
        with TestClient(create_app(runtime)) as hub, TestClient(create_crew_app(edge)) as crew:
            ready = hub.get("/health/ready").json()
            assert _core(ready) == {"status": "ready", "database": True, "broker_connected": True}
            assert ready["overloaded"] is False and ready["event_queue_depth"] == 0
            assert crew.get("/health/ready").status_code == 200
            own_broker.stop()
            assert wait_until(lambda: hub.get("/health/ready").status_code == 503, timeout=10)
            assert _core(hub.get("/health/ready").json()) == {
                "status": "not_ready", "database": True, "broker_connected": False}
            assert hub.get("/health/live").status_code == 200
            assert value(scrape(hub), "goldenhour_hub_broker_connected") == 0
            assert wait_until(lambda: crew.get("/health/ready").status_code == 503, timeout=10)
            assert crew.get("/health/ready").json()["broker_connected"] is False
            assert value(scrape(crew), "goldenhour_edge_broker_connected") == 0
            assert crew.get("/health/live").status_code == 200
    finally:
        edge.stop()


@pytest.mark.postgres
def test_readiness_follows_the_database(postgres_server_url: str, own_broker: MosquittoBroker,
                                        uid: str) -> None:
    # A broker of its own: no retained messages from other tests reach this hub
    # while its database is gone (their handlers would retry and dead-letter).
    name = f"ready_{uid}"
    url = create_database(postgres_server_url, name)
    runtime = HubRuntime(load_hub_settings(hub_id=f"ready-db-{uid}", database_url=url,
                                           mqtt=own_broker.mqtt_settings(), maintenance_interval_s=0.2))
    try:
        with TestClient(create_app(runtime)) as hub:
            assert hub.get("/health/ready").status_code == 200
            assert value(scrape(hub), "goldenhour_hub_database_up") == 1
            drop_database(postgres_server_url, name)  # connections ended, the database gone
            ready = hub.get("/health/ready")
            assert ready.status_code == 503
            assert _core(ready.json()) == {"status": "not_ready", "database": False,
                                           "broker_connected": True}
            samples = scrape(hub)  # the scrape still answers, without the database's figures
            assert value(samples, "goldenhour_hub_database_up") == 0
            assert ("goldenhour_hub_outbox_pending", ()) not in samples
            assert hub.get("/health/live").status_code == 200
    finally:
        drop_database(postgres_server_url, name)
