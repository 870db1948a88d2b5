"""Chaos: kill and cut real processes while cases are being made; nothing may be lost.

Each scenario runs the whole system as separate processes on loopback
(Mosquitto, PostgreSQL, hub workers, simulated ERs, the edge agent behind a
link that can be cut), injects one fault, and counts from the systems of
record: cases made (the edge's outbox database), delivered (the hub's
database), diagnoses delivered twice, cases placed twice, and the time to
recover. ``./deploy/chaos.sh`` runs them with a several-minute outage and
writes the table into docs/reliability.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import Outcome, System

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def _check(outcome: Outcome, record) -> None:  # type: ignore[no-untyped-def]
    record(outcome)
    assert outcome.cases_made >= 3, outcome
    assert outcome.lost == 0, outcome
    assert outcome.placed_twice == 0, outcome


def _running(system: System, cases: int, timeout: float = 60) -> None:
    assert system.wait_until(lambda: len(system.delivered()) >= cases, timeout), \
        "the system did not start delivering cases"


def test_mosquitto_killed_mid_stream_then_restarted(make_system, images: Path, record) -> None:  # type: ignore[no-untyped-def]
    system = make_system()
    system.start(hubs=1)
    system.start_edge(images, interval_s=0.3)
    _running(system, 3)
    system.broker.kill()
    time.sleep(3)
    system.broker.start()
    _check(system.outcome("kill -9 Mosquitto mid-stream, restart after 3 s", time.monotonic()),
           record)


def test_one_hub_worker_killed_while_a_second_runs(make_system, images: Path, record) -> None:  # type: ignore[no-untyped-def]
    system = make_system()
    system.start(hubs=2)
    system.start_edge(images, interval_s=0.3)
    _running(system, 3)
    system.kill(system.hubs["w1"])
    time.sleep(3)  # the second worker carries on alone; then w1 restarts, as systemd would
    system.start_hub("w1")
    _check(system.outcome("kill -9 one of two hub workers, restart after 3 s",
                          time.monotonic()), record)


def test_edge_killed_mid_upload(make_system, big_images: Path, record) -> None:  # type: ignore[no-untyped-def]
    system = make_system(rate_bytes_per_s=1_000_000)  # a weak link: 3.7 MB take ~4 s
    system.start(hubs=1)
    system.start_edge(big_images, interval_s=1.0)
    _running(system, 1)
    time.sleep(1.5)  # the first full image is on its way
    system.kill(system.edge)
    time.sleep(1)
    system.start_edge(big_images, interval_s=1.0)
    outcome = system.outcome("kill -9 the edge agent mid-upload (1 MB/s link), restart",
                             time.monotonic(), images=True)
    _check(outcome, record)
    assert outcome.images_verified == outcome.cases_made


def test_edge_cut_off_from_the_broker(make_system, images: Path, record,  # type: ignore[no-untyped-def]
                                      request: pytest.FixtureRequest) -> None:
    outage = float(request.config.getoption("--chaos-outage"))
    system = make_system()
    system.start(hubs=1)
    system.start_edge(images, interval_s=1.0)
    _running(system, 2)
    system.proxy.cut()
    before = len(system.made())
    time.sleep(outage)
    assert len(system.made()) > before, "the ambulance stopped making cases while offline"
    system.proxy.restore()
    _check(system.outcome(f"edge cut off from the broker for {outage:g} s while making cases",
                          time.monotonic()), record)
