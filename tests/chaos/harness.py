"""The whole system as separate processes, with the faults the chaos suite injects.

Broker, PostgreSQL, hub workers, simulated ERs and the edge agent run as they
do in a deployment (``goldenhour ... `` processes configured by environment),
the edge reaching the broker through a :class:`LinkProxy` that can be cut.
Counts come from the systems of record: the edge's own outbox database (cases
made) and the hub's database (cases delivered, images verified).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from hospital_hub.db import make_engine
from shared import topics
from shared.broker import MosquittoBroker, free_port
from shared.messages import decode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.chaos.proxy import LinkProxy

REPO = Path(__file__).parents[2]


@dataclass
class Outcome:
    """One fault and what it did."""

    fault: str
    cases_made: int
    delivered: int
    duplicate_deliveries: int
    """Diagnoses the broker delivered more than once (the hub dropped the copies)."""
    placed_twice: int
    images_verified: int
    lost: int
    recovery_s: float
    """From the end of the fault until every case made was in the hub's database."""

    def row(self) -> dict[str, Any]:
        return self.__dict__.copy()


class System:
    """Everything one scenario needs, started and stopped as processes."""

    def __init__(self, workdir: Path, database_url: str, ambulance: str,
                 rate_bytes_per_s: float | None = None) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.ambulance = ambulance
        (workdir / "broker").mkdir(parents=True)
        self.broker = MosquittoBroker(port=free_port(), workdir=workdir / "broker")
        self.proxy = LinkProxy(self.broker.port, rate_bytes_per_s)
        self.hubs: dict[str, subprocess.Popen[bytes]] = {}
        self.others: list[subprocess.Popen[bytes]] = []
        self.edge: subprocess.Popen[bytes] | None = None
        self.engine = make_engine(database_url)
        self._diagnoses: Counter[bytes] = Counter()
        self._watch_lock = threading.Lock()
        self._watcher: PahoCommunicator | None = None

    # -- processes ------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        port = str(self.broker.port)
        return {**os.environ, "PYTHONUNBUFFERED": "1",
                "GOLDENHOUR_HUB_MQTT__PORT": port, "GOLDENHOUR_HUB_DATABASE_URL": self.database_url,
                "GOLDENHOUR_HUB_SHARE_GROUP": "chaos", "GOLDENHOUR_HUB_LOG_LEVEL": "WARNING",
                "GOLDENHOUR_HUB_MAINTENANCE_INTERVAL_S": "0.2",
                "GOLDENHOUR_HUB_OFFER_TTL_S": "10",
                "GOLDENHOUR_HUB_MQTT__RECONNECT_MAX_S": "1",
                "GOLDENHOUR_EDGE_MQTT__RECONNECT_MAX_S": "1", **extra}

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen([sys.executable, "-m", "shared.cli", *args], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)

    def start(self, hubs: int = 1) -> None:
        """Broker, link, hub workers, ERs and the watcher."""
        self.broker.start()
        self.proxy.restore()
        for number in range(1, hubs + 1):
            self.start_hub(f"w{number}")
        self.others.append(self._spawn(["hub", "simulate-ers", "--policy", "accept", "--delay",
                                        "0"], self._env(), "ers"))
        self._watch()

    def start_hub(self, name: str) -> None:
        """Start (or restart) the hub worker ``name``."""
        self.hubs[name] = self._spawn(["hub", "worker"],
                                      self._env(GOLDENHOUR_HUB_HUB_ID=f"chaos-{name}"), name)

    def start_edge(self, images: Path, interval_s: float) -> None:
        """Start (or restart) the ambulance, which makes a case every ``interval_s``."""
        env = self._env(GOLDENHOUR_EDGE_AMBULANCE_ID=self.ambulance,
                        GOLDENHOUR_EDGE_MQTT__PORT=str(self.proxy.port),
                        GOLDENHOUR_EDGE_STATE_DIR=str(self.workdir / "edge"),
                        GOLDENHOUR_EDGE_CONFIRM_TIMEOUT_S="15",
                        GOLDENHOUR_EDGE_LOG_LEVEL="WARNING")
        self.edge = self._spawn(["edge", "run", "--folder", str(images), "--interval",
                                 str(interval_s)], env, "edge")

    @staticmethod
    def kill(process: subprocess.Popen[bytes] | None) -> None:
        """``kill -9``."""
        if process and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def stop_edge(self) -> None:
        """Stop the ambulance cleanly (it stops making cases)."""
        if self.edge and self.edge.poll() is None:
            self.edge.terminate()
            self.edge.wait(timeout=20)

    def close(self) -> None:
        """Stop everything."""
        for process in [self.edge, *self.hubs.values(), *self.others]:
            if process and process.poll() is None:
                process.terminate()
        for process in [self.edge, *self.hubs.values(), *self.others]:
            if process:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self._watcher:
            self._watcher.stop()
        self.proxy.cut()
        self.broker.cleanup()
        self.engine.dispose()

    # -- counting -------------------------------------------------------------------
    def _watch(self) -> None:
        """Count every diagnosis the broker delivers, straight from the broker."""
        def count(topic: str, data: bytes) -> None:
            with self._watch_lock:
                self._diagnoses[decode(data).message_id.bytes] += 1

        settings = MqttSettings(port=self.broker.port, reconnect_min_s=0.2, reconnect_max_s=1)
        self._watcher = PahoCommunicator(settings, client_id=f"chaos-watch-{self.ambulance}")
        self._watcher.subscribe(topics.CASE_DIAGNOSIS.subscription(ambulance_id=self.ambulance),
                                count)
        self._watcher.start()

    def made(self) -> set[str]:
        """Cases the ambulance made (its own outbox database)."""
        path = self.workdir / "edge" / f"outbox-{self.ambulance}.sqlite3"
        if not path.exists():
            return set()
        with sqlite3.connect(path, timeout=30) as db:
            return {row[0] for row in db.execute("SELECT case_id FROM edge_case")}

    def _query(self, sql: str) -> set[str]:
        try:
            with self.engine.connect() as connection:
                return {row[0] for row in connection.execute(text(sql))}
        except Exception:  # the tables appear when the first hub worker has migrated
            return set()

    def delivered(self) -> set[str]:
        """Cases in the hub's database."""
        return self._query(f"SELECT id FROM \"case\" WHERE ambulance_id = '{self.ambulance}'")

    def images_verified(self) -> set[str]:
        """Cases whose full image the hub holds, complete and verified."""
        return self._query("SELECT case_id FROM caseimage WHERE complete")

    def placed_twice(self) -> int:
        """Cases with more than one accepted offer (must be 0)."""
        return len(self._query("SELECT case_id FROM offer WHERE state = 'ACCEPTED' "
                               "GROUP BY case_id HAVING COUNT(*) > 1"))

    def duplicate_deliveries(self) -> int:
        with self._watch_lock:
            return sum(n - 1 for n in self._diagnoses.values() if n > 1)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.25)
        return predicate()

    def outcome(self, fault: str, fault_ended: float, timeout: float = 120,
                images: bool = False) -> Outcome:
        """Measure the recovery (until every case made by the end of the fault is
        in the hub), then stop making cases, let the rest arrive, and count."""
        before = self.made()

        def arrived(cases: set[str]) -> Callable[[], bool]:
            def check() -> bool:
                done = cases <= self.delivered()
                return done and (not images or cases <= self.images_verified())
            return check

        self.wait_until(arrived(before), timeout)
        recovery = time.monotonic() - fault_ended
        # Stop making cases, but let the ambulance forward what it has queued:
        # restart it with nothing to send, as a crew ending its shift would.
        self.stop_edge()
        made = self.made()
        empty = self.workdir / "no-images"
        empty.mkdir(exist_ok=True)
        self.start_edge(empty, interval_s=60)
        self.wait_until(arrived(made), timeout)
        delivered = made & self.delivered()
        return Outcome(fault=fault, cases_made=len(made), delivered=len(delivered),
                       duplicate_deliveries=self.duplicate_deliveries(),
                       placed_twice=self.placed_twice(),
                       images_verified=len(made & self.images_verified()),
                       lost=len(made - delivered), recovery_s=round(recovery, 1))
