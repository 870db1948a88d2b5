"""``goldenhour bench hub``: sustained load against real Mosquitto and PostgreSQL.

Everything runs as separate processes on this machine: the broker, the
database, the hub workers (sharing the load through an MQTT 5 shared
subscription), a case publisher, a position publisher, simulated ERs that
accept the first-ranked offer at once, and an ambulance-side watcher. Every
process stamps events with the same wall clock, and the figures are computed
from those stamps afterwards (:mod:`hospital_hub.bench_figures`); the CPU each
group of processes used comes from ``/proc`` (:mod:`hospital_hub.bench_cpu`).

``--sweep`` keeps one broker, database and set of workers and offers rising
case rates, each with the same positions, and prints the saturation curve and
its knee. ``--hub-src`` runs the workers from another source tree (for
example ``git archive`` of an earlier commit), so an older hub can be measured
under exactly the same load.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from hospital_hub import bench_cpu
from hospital_hub.bench_figures import RateRun, figures, knee, markdown_table
from hospital_hub.bench_load import AmbulanceWatcher, answer_offers, publish_cases, publish_positions
from shared import topics
from shared.broker import MosquittoBroker, free_port

logger = logging.getLogger(__name__)

DEFAULT_RATES = (0, 25, 50, 100, 150, 200, 300, 400)
_PREPARE = ("import sys; from hospital_hub.db import make_engine, migrate; "
            "from hospital_hub.registry import import_registry; "
            "from hospital_hub.settings import SAMPLE_REGISTRY; e = make_engine(sys.argv[1]); "
            "migrate(e); import_registry(e, SAMPLE_REGISTRY); e.dispose()")
"""Case rates of a sweep; 0 runs positions alone (the hub's CPU per position)."""


class HubStack:
    """Broker, database, hub workers, simulated ERs and the ambulance watcher."""

    def __init__(self, workers: int, database: Literal["postgres", "sqlite"],
                 hub_src: Path | None = None, hub_env: dict[str, str] | None = None) -> None:
        self.workers = workers
        self.database = database
        self.hub_src = hub_src
        self.hub_env = hub_env or {}
        self.stack = ExitStack()
        self.work = Path(tempfile.mkdtemp(prefix="goldenhour-bench-hub-"))
        self.context = mp.get_context("spawn")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.metrics_ports: list[int] = []

    def __enter__(self) -> HubStack:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _start(self) -> None:
        from hospital_hub import pgserver
        from hospital_hub.db import make_engine
        from shared.supervisor import wait_online

        self.stack.callback(shutil.rmtree, self.work, True)
        (self.work / "broker").mkdir()
        broker = MosquittoBroker(workdir=self.work / "broker")
        broker.start()
        self.stack.callback(broker.stop)
        if self.database == "postgres":
            server = self.stack.enter_context(pgserver.postgres_server())
            self.url = pgserver.create_database(server, "bench")
        else:
            self.url = f"sqlite:///{self.work / 'hub.db'}"
        self.engine = make_engine(self.url)
        self.stack.callback(self.engine.dispose)
        self.mqtt = {"host": broker.host, "port": broker.port}
        env = {**os.environ, "GOLDENHOUR_HUB_DATABASE_URL": self.url,
               "GOLDENHOUR_HUB_MQTT__PORT": str(broker.port),
               "GOLDENHOUR_HUB_SHARE_GROUP": "bench", "GOLDENHOUR_HUB_LOG_LEVEL": "WARNING",
               "GOLDENHOUR_HUB_MAINTENANCE_INTERVAL_S": "0.2", **self.hub_env}
        cwd = None
        if self.hub_src is not None:
            cwd = str(self.hub_src)
            env["PYTHONPATH"] = str(self.hub_src)
        # The schema and registry of the hub's own source (it may be older than this one),
        # made once before the workers start so they do not race to migrate.
        subprocess.run([sys.executable, "-c", _PREPARE, self.url], cwd=cwd, env=env, check=True)
        for number in range(1, self.workers + 1):
            port = free_port()
            self.metrics_ports.append(port)
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "hub", "worker"], cwd=cwd,
                env={**env, "GOLDENHOUR_HUB_HUB_ID": f"bench-w{number}",
                     "GOLDENHOUR_HUB_METRICS_PORT": str(port)}))
        self.stack.callback(_stop_all, self.processes)
        from shared.settings import MqttSettings

        missing = wait_online(MqttSettings(**self.mqtt), {
            topics.HUB_STATUS.topic(hub_id=f"bench-w{n}"): f"w{n}"
            for n in range(1, self.workers + 1)}, timeout=60)
        if missing:
            raise RuntimeError(f"hub workers not online: {sorted(missing)}")
        self._wait_for_lanes()
        self.watcher = AmbulanceWatcher(self.mqtt)
        self.stack.callback(self.watcher.stop)
        ready = self.context.Event()
        self.control, child = self.context.Pipe()
        ers = self.context.Process(target=answer_offers, args=(self.mqtt, ready, child))
        ers.start()
        self.stack.callback(self._stop_ers, ers)
        if not ready.wait(60):
            raise RuntimeError("simulated ERs did not connect")

    def _wait_for_lanes(self, timeout_s: float = 60.0) -> None:
        """Wait until every worker's position lane has subscribed (a hub without
        lanes, an older one, has none to wait for)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counters = self.counters()
            if counters is None or "lanes_up" not in counters:
                return
            if counters["lanes_up"] >= self.workers:
                return
            time.sleep(0.2)
        raise RuntimeError("the hub's position lanes did not subscribe")

    def _stop_ers(self, ers: Any) -> None:
        self.control.send("stop")
        ers.join(30)

    def take_ers(self) -> dict[str, Any]:
        """The offers and accepts the ERs recorded since the last call."""
        self.control.send("take")
        taken: dict[str, Any] = self.control.recv()
        return taken

    def counters(self) -> dict[str, float] | None:
        """The hub's counters summed over its workers; None if a worker has no metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        total: dict[str, float] = {}
        for port in self.metrics_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
            except OSError:
                return None
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "goldenhour_hub_messages_total":
                        total["messages"] = total.get("messages", 0.0) + sample.value
                    elif sample.name == "goldenhour_hub_positions_total":
                        key = f"positions_{sample.labels['result']}"
                        total[key] = total.get(key, 0.0) + sample.value
                    elif sample.name == "goldenhour_hub_position_lane_up":
                        total["lanes_up"] = total.get("lanes_up", 0.0) + sample.value
        total["messages"] = total.get("messages", 0.0) + total.get("positions_received", 0.0)
        return total

    def stored(self, case_ids: set[str]) -> set[str]:
        """Which of ``case_ids`` the hub's database holds."""
        from sqlmodel import Session, col, select

        from hospital_hub.models import Case

        found: set[str] = set()
        ids = sorted(case_ids)
        with Session(self.engine) as session:
            for start in range(0, len(ids), 1000):
                found.update(session.exec(select(Case.id).where(
                    col(Case.id).in_(ids[start:start + 1000]))).all())
        return found

    def hub_pids(self) -> set[int]:
        return {p.pid for p in self.processes}


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    if before is None or after is None:
        return {}
    return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}


def run_rate(hub: HubStack, cases_per_s: float, positions_per_s: float, duration_s: float,
             ambulances: int, drain_s: float) -> dict[str, Any]:
    """Offer one case rate (and the positions) for ``duration_s``, then drain."""
    work = hub.work
    for name in ("cases.json", "positions.json"):
        (work / name).unlink(missing_ok=True)
    hub.take_ers()  # forget what an earlier rate left behind
    jobs: list[tuple[Any, tuple[Any, ...]]] = [(publish_positions, (
        hub.mqtt, positions_per_s, duration_s, ambulances, str(work / "positions.json")))]
    if cases_per_s > 0:
        jobs.append((publish_cases, (hub.mqtt, cases_per_s, duration_s,
                                     str(work / "cases.json"))))
    go = hub.context.Event()
    loaders = []
    for target, args in jobs:
        ready = hub.context.Event()
        loaders.append((hub.context.Process(target=target, args=(*args, ready, go)), ready))
    for process, _ in loaders:
        process.start()
    for process, ready in loaders:
        if not ready.wait(60):
            process.terminate()
            raise RuntimeError("a load generator did not connect")
    counters_before = hub.counters()
    cpu_before = bench_cpu.snapshot(hub.hub_pids(), time.time())
    go.set()  # the window starts with the load: connecting is not in it
    for process, _ in loaders:
        process.join()
    load_end = time.time()
    cpu_after = bench_cpu.snapshot(hub.hub_pids(), load_end)
    counters_after = hub.counters()
    cases = (json.loads((work / "cases.json").read_text()) if cases_per_s > 0
             else {"sent": {}, "seconds": duration_s})
    positions = json.loads((work / "positions.json").read_text())
    sent = set(cases["sent"])
    deadline = time.time() + drain_s
    while time.time() < deadline and hub.watcher.done(sent) < len(sent):
        time.sleep(0.25)
    time.sleep(0.5)  # the last offers and withdrawals on their way to the ERs
    ers = hub.take_ers()
    run = RateRun(
        cases_per_s=cases_per_s, positions_per_s=positions_per_s, duration_s=duration_s,
        sent=cases["sent"], case_seconds=cases["seconds"], positions_sent=positions["count"],
        position_seconds=positions["seconds"], offers=ers["offers"], accepts=ers["accepts"],
        decisions=hub.watcher.snapshot(), load_end=load_end, stored=hub.stored(sent),
        counters=_delta(counters_before, counters_after),
        cpu_cores=bench_cpu.cores(cpu_before, cpu_after), load_seconds=load_end - cpu_before.at)
    return figures(run)


def run(cases_per_s: float, positions_per_s: float, duration_s: float, workers: int,
        database: Literal["postgres", "sqlite"], ambulances: int, drain_s: float,
        hub_src: Path | None = None, hub_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One rate on a fresh stack; returns its figures."""
    with HubStack(workers, database, hub_src, hub_env) as hub:
        row = run_rate(hub, cases_per_s, positions_per_s, duration_s, ambulances, drain_s)
    return {**row, "hub_workers": workers, "database": database, "cpu_count": os.cpu_count(),
            "targets": {"cases_per_s": cases_per_s, "positions_per_s": positions_per_s,
                        "duration_s": duration_s, "ambulances": ambulances}}


def sweep(rates: list[float], positions_per_s: float, duration_s: float, workers: int,
          database: Literal["postgres", "sqlite"], ambulances: int, drain_s: float,
          hub_src: Path | None = None, hub_env: dict[str, str] | None = None,
          stop_after_failures: int = 2) -> dict[str, Any]:
    """Rising case rates on one stack; stops after ``stop_after_failures``
    rates in a row that miss the knee's conditions."""
    from hospital_hub.bench_figures import passes

    rows: list[tuple[float, dict[str, Any]]] = []
    failures = 0
    with HubStack(workers, database, hub_src, hub_env) as hub:
        for rate in sorted(rates):
            row = run_rate(hub, rate, positions_per_s, duration_s, ambulances, drain_s)
            rows.append((rate, row))
            logger.warning("rate done", extra={"cases_per_s": rate, **{
                k: row[k] for k in ("cases_per_s", "publish_to_offer_ms_p95",
                                    "accept_to_ambulance_ms_p95", "lost", "hub_cpu_cores")}})
            if rate > 0:
                failures = 0 if passes(row) else failures + 1
                if failures >= stop_after_failures:
                    break
    per_position = next((row.get("cpu_us_per_position") for rate, row in rows if rate == 0), None)
    return {"knee_cases_per_s": knee(rows), "cpu_us_per_position": per_position,
            "rows": [{"target_cases_per_s": rate, **row} for rate, row in rows],
            "table": markdown_table(rows), "hub_workers": workers, "database": database,
            "cpu_count": os.cpu_count(), "hub_src": str(hub_src) if hub_src else None,
            "targets": {"positions_per_s": positions_per_s, "duration_s": duration_s,
                        "ambulances": ambulances, "drain_s": drain_s}}


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"rates must be numbers separated by commas: {text!r}") from exc
    if not rates or any(rate < 0 for rate in rates):
        raise typer.BadParameter("give at least one rate, none negative")
    return rates


def bench_hub(
    cases_per_s: Annotated[float, typer.Option(help="Target diagnoses per second.")] = 200.0,
    positions_per_s: Annotated[float, typer.Option(help="Target positions per second.")] = 2000.0,
    duration: Annotated[float, typer.Option(help="Seconds of load (per rate with --sweep).")]
    = 10.0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Hub worker processes.")] = 2,
    database: Annotated[Literal["postgres", "sqlite"], typer.Option()] = "postgres",
    ambulances: Annotated[int, typer.Option(min=1, help="Distinct ambulances reporting.")]
    = 1000,
    drain: Annotated[float, typer.Option(help="Seconds to wait for the backlog after the load.")]
    = 60.0,
    do_sweep: Annotated[bool, typer.Option(
        "--sweep", help="Rising case rates (--rates) with the same positions; prints the knee.")]
    = False,
    rates: Annotated[str, typer.Option(help="Case rates of --sweep, comma-separated; 0 runs "
                                            "positions alone.")]
    = ",".join(str(r) for r in DEFAULT_RATES),
    hub_src: Annotated[Path | None, typer.Option(
        help="Run the hub workers from this source tree (e.g. an earlier commit).",
        exists=True, file_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Sustained hub load on loopback: cases with ranking and offers, positions,
    and an ER that accepts at once. Starts its own Mosquitto and PostgreSQL."""
    from shared.logs import configure_logging

    configure_logging("WARNING", "text", service="bench")
    if do_sweep:
        result = sweep(_rates(rates), positions_per_s, duration, workers, database, ambulances,
                       drain, hub_src)
        if as_json:
            typer.echo(json.dumps(result))
            return
        typer.echo(result["table"])
        typer.echo(f"\nknee: {result['knee_cases_per_s']} cases/s "
                   f"(p95 publish->offers <= 500 ms, accept->ambulance <= 250 ms, "
                   f"0 lost, 0 double); hub CPU per position: "
                   f"{result['cpu_us_per_position']} µs; {workers} workers, "
                   f"{os.cpu_count()} CPUs")
        return
    figures_ = run(cases_per_s, positions_per_s, duration, workers, database, ambulances, drain,
                   hub_src)
    if as_json:
        typer.echo(json.dumps(figures_))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "value", title="goldenhour hub benchmark (loopback)")
    for key, value in figures_.items():
        table.add_row(key, str(value))
    Console().print(table)
