"""``goldenhour bench hub``: sustained load against real Mosquitto and PostgreSQL.

Everything runs as separate processes on this machine: the broker, the
database, the hub workers (sharing the load through an MQTT 5 shared
subscription), a case publisher, a position publisher, simulated ERs that
accept the first-ranked offer at once, and an ambulance-side watcher. Every
process stamps events with the same wall clock, and the figures are computed
from those stamps afterwards.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgpack
import typer

from hospital_hub.db import make_engine, migrate
from hospital_hub.registry import import_registry
from hospital_hub.settings import SAMPLE_REGISTRY
from shared import topics
from shared.broker import MosquittoBroker
from shared.ids import new_case_id
from shared.messages import ErDecisionV1, decode, encode
from shared.messages.envelope import Envelope
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from shared.stats import percentile

logger = logging.getLogger(__name__)


def _client(settings: dict[str, Any], name: str) -> PahoCommunicator:
    client = PahoCommunicator(MqttSettings(**settings, session_expiry_s=0),
                              client_id=f"bench-{name}-{os.getpid()}")
    client.start()
    return client


def _sample_diagnosis(ambulance_id: str) -> dict[str, Any]:
    """The payload of a realistic diagnosis (about 8 KB with its thumbnail)."""
    from shared.findings import FINDINGS
    from shared.messages import (
        DiagnosisV1,
        FindingScore,
        ImageInfo,
        ModelInfo,
        Position,
        Triage,
    )

    probabilities = [0.05 * (i + 1) for i in range(len(FINDINGS))]
    diagnosis = DiagnosisV1(
        ambulance_id=ambulance_id, captured_at=datetime.now(UTC),
        position=Position(lat=42.35, lon=-71.06),
        image=ImageInfo(source="bench.dcm", format="dicom", width=2048, height=2048,
                        sha256="ab" * 32, thumbnail_jpeg=b"\xff\xd8" + os.urandom(8000)),
        model=ModelInfo(name="placeholder-not-a-model", version="0", placeholder=True),
        findings=[FindingScore(finding=f, probability=p, threshold=0.5)
                  for f, p in zip(FINDINGS, probabilities, strict=True)],
        top3=[FINDINGS[13], FINDINGS[12], FINDINGS[11]],
        triage=Triage(level=2, label="very urgent", reasons=["bench"]),
    )
    return diagnosis.model_dump(mode="python", exclude_none=True)


def _wire(schema: str, case_id: str | None, sender: str, payload: dict[str, Any]) -> bytes:
    """Pack an envelope directly (the load generator must not be the bottleneck)."""
    return msgpack.packb({"schema": schema, "version": 1, "message_id": uuid.uuid4().bytes,
                          "case_id": case_id, "sender": sender,
                          "sent_at": datetime.now(UTC), "payload": payload},
                         datetime=True, use_bin_type=True)


def publish_cases(settings: dict[str, Any], rate: float, duration: float, out: str) -> None:
    """Publish diagnoses at ``rate`` per second, QoS 1 with acks; record each time."""
    client = _client(settings, "cases")
    ambulances = [f"amb-{n:04d}" for n in range(200)]
    payloads = {a: _sample_diagnosis(a) for a in ambulances[:1]}
    template = payloads[ambulances[0]]
    sent: dict[str, float] = {}
    start = time.time()
    number = 0
    while (now := time.time()) - start < duration:
        due = int((now - start) * rate) + 1
        while number < due:
            ambulance = ambulances[number % len(ambulances)]
            case_id = new_case_id()
            payload = {**template, "ambulance_id": ambulance}
            sent[case_id] = time.time()
            client.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance, case_id=case_id),
                           _wire("diagnosis", case_id, ambulance, payload))
            number += 1
        time.sleep(0.002)
    client.stop()
    Path(out).write_text(json.dumps({"sent": sent, "start": start, "end": time.time()}))


def publish_positions(settings: dict[str, Any], rate: float, duration: float,
                      ambulances: int, out: str) -> None:
    """Publish positions of ``ambulances`` ambulances at ``rate`` per second, QoS 0."""
    client = _client(settings, "positions")
    count = 0
    start = time.time()
    while (now := time.time()) - start < duration:
        due = int((now - start) * rate)
        while count < due:
            ambulance = f"amb-{count % ambulances:04d}"
            payload = {"position": {"lat": 42.30 + (count % 97) / 1000,
                                    "lon": -71.10 + (count % 89) / 1000}}
            client.publish(topics.AMBULANCE_POSITION.topic(ambulance_id=ambulance),
                           _wire("position", None, ambulance, payload), qos=0)
            count += 1
        time.sleep(0.002)
    elapsed = time.time() - start
    client.stop()
    Path(out).write_text(json.dumps({"count": count, "seconds": elapsed}))


def answer_offers(settings: dict[str, Any], ready: Any, stop: Any, out: str) -> None:
    """Simulated ERs: record every offer; accept the first-ranked one at once."""
    client = _client(settings, "ers")
    lock = threading.Lock()
    offers: list[tuple[str, str, str, int, float]] = []
    accepts: dict[str, float] = {}

    def on_offer(topic: str, data: bytes) -> None:
        envelope = decode(data)
        offer = envelope.payload
        received = time.time()
        with lock:
            offers.append((envelope.case_id, offer.hospital_id, offer.state, offer.rank,
                           received))
        if offer.state == "open" and offer.rank == 1:
            decision = Envelope.wrap(ErDecisionV1(hospital_id=offer.hospital_id,
                                                  decision="accept", decided_by="bench"),
                                     sender=offer.hospital_id, case_id=envelope.case_id)
            with lock:
                accepts[envelope.case_id] = time.time()
            client.publish(topics.ER_DECISION.topic(hospital_id=offer.hospital_id,
                                                    case_id=envelope.case_id), encode(decision))

    client.subscribe(topics.ER_OFFER.subscription(), on_offer)
    ready.set()
    stop.wait()
    client.stop()
    with lock:
        Path(out).write_text(json.dumps({"offers": offers, "accepts": accepts}))


def run(cases_per_s: float, positions_per_s: float, duration_s: float, workers: int,
        database: Literal["postgres", "sqlite"], ambulances: int, drain_s: float) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    from hospital_hub import pgserver
    from shared.supervisor import wait_online

    work = Path(tempfile.mkdtemp(prefix="goldenhour-bench-hub-"))
    context = mp.get_context("spawn")
    hub_processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        broker = MosquittoBroker(workdir=work / "broker")
        (work / "broker").mkdir()
        broker.start()
        stack.callback(broker.stop)
        if database == "postgres":
            server = stack.enter_context(pgserver.postgres_server())
            url = pgserver.create_database(server, "bench")
        else:
            url = f"sqlite:///{work / 'hub.db'}"
        engine = make_engine(url)
        migrate(engine)
        import_registry(engine, SAMPLE_REGISTRY)
        engine.dispose()
        mqtt = {"host": broker.host, "port": broker.port, "protocol": broker.protocol}
        env = {**os.environ, "GOLDENHOUR_HUB_DATABASE_URL": url,
               "GOLDENHOUR_HUB_MQTT__PORT": str(broker.port),
               "GOLDENHOUR_HUB_SHARE_GROUP": "bench", "GOLDENHOUR_HUB_LOG_LEVEL": "WARNING",
               "GOLDENHOUR_HUB_MAINTENANCE_INTERVAL_S": "0.2"}
        for number in range(1, workers + 1):
            hub_processes.append(subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "hub", "worker"],
                env={**env, "GOLDENHOUR_HUB_HUB_ID": f"bench-w{number}"}))
        stack.callback(_stop_all, hub_processes)
        missing = wait_online(broker.mqtt_settings(), {
            topics.HUB_STATUS.topic(hub_id=f"bench-w{n}"): f"w{n}"
            for n in range(1, workers + 1)}, timeout=60)
        if missing:
            raise RuntimeError(f"hub workers not online: {sorted(missing)}")

        decisions: dict[str, list[Any]] = {}
        lock = threading.Lock()

        def on_decision(topic: str, data: bytes) -> None:
            envelope = decode(data)
            with lock:
                decisions.setdefault(envelope.case_id, []).append(
                    (envelope.payload.status, time.time()))

        watcher = _client(mqtt, "ambulances")
        stack.callback(watcher.stop)
        watcher.subscribe(topics.CASE_DECISION.subscription(), on_decision)
        stop, ready = context.Event(), context.Event()
        ers = context.Process(target=answer_offers,
                              args=(mqtt, ready, stop, str(work / "ers.json")))
        ers.start()
        ready.wait(60)
        loaders = [
            context.Process(target=publish_cases, args=(mqtt, cases_per_s, duration_s,
                                                        str(work / "cases.json"))),
            context.Process(target=publish_positions, args=(
                mqtt, positions_per_s, duration_s, ambulances, str(work / "positions.json"))),
        ]
        for process in loaders:
            process.start()
        for process in loaders:
            process.join()
        cases = json.loads((work / "cases.json").read_text())
        deadline = time.time() + drain_s
        while time.time() < deadline:
            with lock:
                if len(decisions) >= len(cases["sent"]):
                    break
            time.sleep(0.5)
        stop.set()
        ers.join(60)
        with lock:
            seen = dict(decisions)
        return _figures(cases, json.loads((work / "positions.json").read_text()),
                        json.loads((work / "ers.json").read_text()), seen,
                        workers=workers, database=database, targets={
                            "cases_per_s": cases_per_s, "positions_per_s": positions_per_s,
                            "duration_s": duration_s, "ambulances": ambulances})
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _figures(cases: dict[str, Any], positions: dict[str, Any], ers: dict[str, Any],
             ambulances: dict[str, Any], *, workers: int, database: str,
             targets: dict[str, Any]) -> dict[str, Any]:
    sent: dict[str, float] = cases["sent"]
    offers_by_case: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    pairs: Counter[tuple[str, str]] = Counter()
    for case_id, hospital, state, rank, received in ers["offers"]:
        if state == "open" and case_id in sent:
            offers_by_case[case_id].append((hospital, rank, received))
            pairs[(case_id, hospital)] += 1
    offered = {case_id: max(t for _, rank, t in rows if rank <= 3)
               for case_id, rows in offers_by_case.items()
               if len({rank for _, rank, _ in rows if rank <= 3}) == 3}
    publish_to_offer = [(offered[c] - sent[c]) * 1000 for c in offered]
    accepted = {c: next(t for status, t in rows if status == "accepted")
                for c, rows in ambulances.items()
                if c in sent and any(status == "accepted" for status, _ in rows)}
    accept_to_ambulance = [(accepted[c] - ers["accepts"][c]) * 1000 for c in accepted
                           if c in ers["accepts"]]
    first, last_offer = min(sent.values(), default=0.0), max(offered.values(), default=0.0)
    double = {c for (c, _), n in pairs.items() if n > 1} | {
        c for c, rows in offers_by_case.items() if len({h for h, _, _ in rows}) > 3}
    return {
        "cases_published": len(sent),
        "cases_per_s": round(len(offered) / max(1e-9, last_offer - first), 1),
        "positions_per_s": round(positions["count"] / max(1e-9, positions["seconds"]), 1),
        "publish_to_offer_ms_p50": round(percentile(publish_to_offer, 0.5), 1),
        "publish_to_offer_ms_p95": round(percentile(publish_to_offer, 0.95), 1),
        "accept_to_ambulance_ms_p50": round(percentile(accept_to_ambulance, 0.5), 1),
        "accept_to_ambulance_ms_p95": round(percentile(accept_to_ambulance, 0.95), 1),
        "lost": len(sent) - len(accepted),
        "double_offered": len(double),
        "hub_workers": workers,
        "database": database,
        "cpu_count": os.cpu_count(),
        "targets": targets,
        "mean_publish_to_offer_ms": round(statistics.fmean(publish_to_offer), 1)
        if publish_to_offer else None,
    }


def bench_hub(
    cases_per_s: Annotated[float, typer.Option(help="Target diagnoses per second.")] = 200.0,
    positions_per_s: Annotated[float, typer.Option(help="Target positions per second.")] = 2000.0,
    duration: Annotated[float, typer.Option(help="Seconds of load.")] = 10.0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Hub worker processes.")] = 2,
    database: Annotated[Literal["postgres", "sqlite"], typer.Option()] = "postgres",
    ambulances: Annotated[int, typer.Option(min=1, help="Distinct ambulances reporting.")]
    = 1000,
    drain: Annotated[float, typer.Option(help="Seconds to wait for the backlog after the load.")]
    = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Sustained hub load on loopback: cases with ranking and offers, positions,
    and an ER that accepts at once. Starts its own Mosquitto and PostgreSQL."""
    from shared.logs import configure_logging

    configure_logging("WARNING", "text", service="bench")
    figures = run(cases_per_s, positions_per_s, duration, workers, database, ambulances, drain)
    if as_json:
        typer.echo(json.dumps(figures))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "value", title="goldenhour hub benchmark (loopback)")
    for key, value in figures.items():
        table.add_row(key, str(value))
    Console().print(table)
