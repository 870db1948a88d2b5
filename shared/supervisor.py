"""Runs the whole system on one machine as separate processes: the main job
(``goldenhour demo``) and the end-to-end benchmark (``goldenhour bench e2e``).

Each service is started with ``python -m shared.cli ...`` and configured by
environment variables only, exactly as a deployment would start it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from shared import topics
from shared.broker import BrokerKind, EmbeddedBroker, start_embedded_broker
from shared.datapaths import data_dir
from shared.demo_checks import check_ports, simulated_ers, wait_http
from shared.errors import ContractError, GoldenhourError
from shared.lifecycle import interruptible
from shared.messages import StatusV1, decode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings

logger = logging.getLogger(__name__)
console = Console(stderr=True)

START_POSITIONS = [(42.3467, -71.0972), (42.3736, -71.1097), (42.3188, -71.0846),
                   (42.3601, -71.0589), (42.3500, -71.1300)]
"""Boston and Cambridge street positions for simulated ambulances."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``goldenhour demo`` runs."""

    ambulances: int = 2
    images: Path | None = None
    interval_s: float = 30.0
    http_port: int = 8000
    state_dir: Path = Path(".goldenhour")
    broker: BrokerKind = "auto"
    accept_probability: float = 0.5
    duration_s: float | None = None
    log_format: str = "text"
    human_ers: tuple[str, ...] = ()
    """Hospital ids whose offers no simulated doctor answers: a person does, in the ER console."""


class Processes:
    """Child processes that stop together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], *,
              capture: bool = False) -> subprocess.Popen[bytes]:
        """Start ``goldenhour ARGS`` as a child with extra environment ``env``."""
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE if capture else None,
        )
        self.children.append((name, process))
        logger.info("started", extra={"child": name, "pid": process.pid})
        return process

    def dead(self) -> list[tuple[str, int]]:
        """Children that have exited, with their exit codes."""
        return [(name, code) for name, p in self.children if (code := p.poll()) is not None]

    def stop(self) -> None:
        """SIGTERM everyone, then SIGKILL whoever is still there after 10 s."""
        for _, process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_online(settings: MqttSettings, wanted: dict[str, str], timeout: float) -> set[str]:
    """Wait until every status topic in ``wanted`` (topic -> name) says online.

    Returns the names still not online when the time ran out.
    """
    online: set[str] = set()
    done = threading.Event()

    def on_status(topic: str, data: bytes) -> None:
        try:
            envelope = decode(data, expected=StatusV1)
        except ContractError:
            return
        if topic in wanted and envelope.payload.state == "online":
            online.add(topic)
            if online >= set(wanted):
                done.set()

    client = PahoCommunicator(settings.model_copy(update={"session_expiry_s": 0}),
                              client_id=f"goldenhour-supervisor-{os.getpid()}")
    for topic in wanted:
        client.subscribe(topic, on_status)
    client.start()
    try:
        done.wait(timeout)
    finally:
        client.stop()
    return {name for topic, name in wanted.items() if topic not in online}


def _broker_env(broker: EmbeddedBroker) -> dict[str, str]:
    env: dict[str, str] = {}
    for service in ("HUB", "EDGE"):
        env[f"GOLDENHOUR_{service}_MQTT__HOST"] = broker.host
        env[f"GOLDENHOUR_{service}_MQTT__PORT"] = str(broker.port)
        env[f"GOLDENHOUR_{service}_MQTT__PROTOCOL"] = broker.protocol
    return env


def _hospital_ids() -> list[str]:
    import csv

    from shared.datapaths import REPO_ROOT

    registry = os.environ.get("GOLDENHOUR_HUB_REGISTRY_CSV") or str(
        REPO_ROOT / "hospital_hub" / "data" / "sample_hospitals.csv")
    with open(registry, encoding="utf-8") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def _start_core(processes: Processes, broker: EmbeddedBroker, database_url: str,
                http_port: int | None, er_args: list[str], log_format: str,
                log_level: str = "INFO", simulated: list[str] | None = None) -> dict[str, str]:
    """Start the hub and the simulated ERs (every hospital, or ``simulated``); wait
    until all say online and, with ``http_port``, until the hub serves HTTP there."""
    env = {**_broker_env(broker), "GOLDENHOUR_HUB_DATABASE_URL": database_url,
           "GOLDENHOUR_HUB_LOG_FORMAT": log_format, "GOLDENHOUR_HUB_LOG_LEVEL": log_level}
    hub_args = ["hub", "serve", "--port", str(http_port)] if http_port else ["hub", "worker"]
    hub = processes.spawn("hub", hub_args, env)
    hospitals = _hospital_ids() if simulated is None else simulated
    if hospitals:
        processes.spawn("ers", ["hub", "simulate-ers", *er_args], env)
    wanted = {topics.HUB_STATUS.topic(hub_id="hub-1"): "hub"}
    wanted |= {topics.ER_STATUS.topic(hospital_id=h): f"ER {h}" for h in hospitals}
    missing = wait_online(broker.mqtt_settings(), wanted, timeout=60)
    if missing:
        raise GoldenhourError(f"not online after 60 s: {sorted(missing)}")
    if http_port:
        wait_http(hub, http_port, timeout=60)
    return env


DEMO_PASSWORD_FILE = "demo-password"
"""In the state folder: the one password of every demo user (mode 0600)."""


def demo_password(state: Path) -> str:
    """The demo users' password: made once, then kept in ``state/demo-password``."""
    path = state / DEMO_PASSWORD_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(12)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    return password


def _seed_demo_users(database_url: str, password: str) -> None:
    """Create (or reset) admin, dispatcher and one ER doctor per hospital."""
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "hub", "seed-demo-users", "--password-stdin"],
        input=password + "\n", text=True, capture_output=True, timeout=120,
        env={**os.environ, "GOLDENHOUR_HUB_DATABASE_URL": database_url},
    )
    if result.returncode != 0:
        raise GoldenhourError(f"could not create the demo users: {result.stderr.strip()[-500:]}")


def run_demo(options: DemoOptions) -> int:
    """Run the demo until Ctrl-C (or ``duration_s``); returns an exit code."""
    interruptible()
    options.state_dir.mkdir(parents=True, exist_ok=True)
    state = options.state_dir.resolve()
    password = demo_password(state)
    folder = options.images
    if folder is None and (root := data_dir()) is not None:
        candidate = root / "nih-cxr14-sample" / "images"
        folder = candidate if candidate.is_dir() else None
    try:
        simulated, er_args = simulated_ers(options.human_ers, _hospital_ids(), state)
        ports = {options.http_port: "the hub's web port (--port)"}
        ports |= {crew_port(options, n): f"amb-{n}'s crew page (--port + 80 + {n})"
                  for n in range(1, options.ambulances + 1)}
        check_ports(ports)
    except GoldenhourError as exc:
        console.print(f"[red]goldenhour demo cannot start:[/] {exc}", soft_wrap=True)
        return 1
    processes = Processes()
    broker = start_embedded_broker(options.broker, workdir=_fresh(state / "broker"))
    try:
        _seed_demo_users(f"sqlite:///{state / 'hub.db'}", password)
        env = _start_core(
            processes, broker, f"sqlite:///{state / 'hub.db'}", options.http_port,
            ["--accept-probability", str(options.accept_probability), "--delay", "3", *er_args],
            options.log_format, simulated=simulated,
        )
        for number in range(1, options.ambulances + 1):
            lat, lon = START_POSITIONS[(number - 1) % len(START_POSITIONS)]
            args = ["edge", "run", "--interval", str(options.interval_s),
                    "--http-port", str(crew_port(options, number))]
            if folder:
                args += ["--folder", str(folder), "--seed", str(number)]
            processes.spawn(f"amb-{number}", args, {
                **env, "GOLDENHOUR_EDGE_AMBULANCE_ID": f"amb-{number}",
                "GOLDENHOUR_EDGE_LAT": str(lat), "GOLDENHOUR_EDGE_LON": str(lon),
                "GOLDENHOUR_EDGE_LOG_FORMAT": options.log_format,
                "GOLDENHOUR_EDGE_STATE_DIR": str(state / "edge"),
            })
        _banner(options, broker, folder, password, state)
        deadline = time.monotonic() + options.duration_s if options.duration_s else None
        while deadline is None or time.monotonic() < deadline:
            if dead := processes.dead():
                logger.error("a service stopped; stopping the demo", extra={"exited": dead})
                return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except GoldenhourError as exc:
        logger.error("demo failed", extra={"error": str(exc)})
        console.print(f"[red]goldenhour demo failed:[/] {exc}", soft_wrap=True)
        return 1
    finally:
        processes.stop()
        broker.stop()


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def crew_port(options: DemoOptions, number: int) -> int:
    """The crew page of the demo's ambulance ``number``: 8081, 8082, ... beside
    the hub's 8000 (the hub's port + 80 + number)."""
    return options.http_port + 80 + number


def _banner(options: DemoOptions, broker: EmbeddedBroker, folder: Path | None, password: str,
            state: Path) -> None:
    """What is running and how to use it. Lines are never wrapped (``soft_wrap``):
    the send command must stay one line to copy, whatever the terminal's width."""
    base = f"http://127.0.0.1:{options.http_port}"
    script = Path(sys.executable).parent / "goldenhour"
    program = str(script) if script.exists() else "goldenhour"
    send = (f"GOLDENHOUR_EDGE_MQTT__PORT={broker.port} GOLDENHOUR_EDGE_MQTT__PROTOCOL="
            f"{broker.protocol} {program} edge send PATH/TO/XRAY.dcm --ambulance-id amb-1")
    images = (f"ambulances take X-rays from {folder} every {options.interval_s:g} s"
              if folder else "no X-ray folder found (set GOLDENHOUR_DATA_DIR or --images); "
              "ambulances wait for you to send one")
    console_er = options.human_ers[0] if options.human_ers else "bos-mgh"
    if options.human_ers:
        doctors = ("  ERs left to you: " + ", ".join(
            f"{h} (sign in as er-{h} at {base}/er/{h})" for h in options.human_ers)
            + "; their offers wait for your Accept or Decline\n")
    else:
        doctors = ("  every ER has a simulated doctor answering within 3 s; to answer offers yourself: "
                   "--human-er bos-mgh\n")
    console.print(
        f"\n[bold]goldenhour is running[/] (AI results are NOT for clinical use)\n"
        f"  dispatch board : {base}/\n"
        + "".join(f"  crew page      : http://127.0.0.1:{crew_port(options, n)}/ (amb-{n})\n"
                  for n in range(1, options.ambulances + 1)) +
        f"  an ER console  : {base}/er/{console_er}\n"
        f"  sign in as     : dispatcher, er-{console_er} (an ER doctor; one per hospital: "
        f"er-<hospital id>) or admin\n"
        f"  password       : {password}  (all demo users; kept in {state / DEMO_PASSWORD_FILE})\n"
        + doctors +
        f"  API docs       : {base}/docs\n"
        f"  broker         : 127.0.0.1:{broker.port} (MQTT {broker.protocol})\n"
        f"  {images}\n"
        f"  stop           : Ctrl-C\n"
        f"  send an X-ray (one line):",
        soft_wrap=True, highlight=False,
    )
    console.print(send, soft_wrap=True, markup=False, highlight=False)
    console.print()


def run_bench_e2e(cases: int, image: Path | None, broker: BrokerKind) -> int:
    """Time ``cases`` round trips through separate processes; print the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="goldenhour-bench-"))
    image = image or _bench_image(workdir)
    processes = Processes()
    running = start_embedded_broker(broker, workdir=_fresh(workdir / "broker"))
    try:
        env = _start_core(processes, running, f"sqlite:///{workdir / 'hub.db'}", None,
                          ["--policy", "accept", "--delay", "0"], "text", "WARNING")
        sender = processes.spawn(
            "send", ["edge", "send", str(image), "--count", str(cases), "--json"],
            {**env, "GOLDENHOUR_EDGE_AMBULANCE_ID": "amb-bench",
             "GOLDENHOUR_EDGE_LOG_LEVEL": "WARNING"},
            capture=True,
        )
        out, _ = sender.communicate(timeout=60 + cases * 30)
        if sender.returncode != 0:
            console.print(f"[red]sender failed with exit code {sender.returncode}[/]")
            return 1
        _print_bench(json.loads(out), image, running)
        return 0
    except GoldenhourError as exc:
        console.print(f"[red]bench failed:[/] {exc}")
        return 1
    finally:
        processes.stop()
        running.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _bench_image(workdir: Path) -> Path:
    root = data_dir()
    if root and (root / "dicom" / "siim-cxr-monochrome2.dcm").is_file():
        return root / "dicom" / "siim-cxr-monochrome2.dcm"
    import numpy as np
    from PIL import Image

    path = workdir / "synthetic.png"
    gradient = np.add.outer(np.arange(512), np.arange(512)) % 256
    Image.fromarray(gradient.astype("uint8")).save(path)
    return path


def _print_bench(report: dict[str, Any], image: Path, broker: EmbeddedBroker) -> None:
    from rich.table import Table

    table = Table(title=f"end-to-end latency, {report['count']} cases, loopback, "
                        f"{broker.__class__.__name__} (MQTT {broker.protocol})")
    for column in ("figure", "min", "median", "p95", "max"):
        table.add_column(column)
    for key, label in (("round_trip_ms", "publish ack -> decision received (ms)"),
                       ("submit_ms", "diagnose + publish until broker ack (ms)")):
        stats = report[key]
        table.add_row(label, *(f"{stats[s]:.1f}" for s in ("min", "median", "p95", "max")))
    Console().print(table)
    Console().print(f"image: {image.name}; outcomes: {report['outcomes']}; "
                    "hub and ERs in separate processes, ER accepts with no delay")
