"""``goldenhour edge ...``: the ambulance agent and a one-shot sender."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from edge_agent.agent import EdgeAgent
from edge_agent.settings import EdgeSettings, load_edge_settings
from shared.errors import GoldenhourError, InputImageError
from shared.lifecycle import stop_event
from shared.logs import configure_logging
from shared.stats import percentile

app = typer.Typer(help="Edge agent for the ambulance computer.", no_args_is_help=True)
logger = logging.getLogger(__name__)
console = Console()
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}


@app.command()
def run(
    folder: Annotated[Path | None, typer.Option(help="Take X-rays from this folder "
                                                "(simulated X-ray unit).")] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between X-rays.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Order in which images are picked.")] = 0,
    http_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Serve the crew page on this port (default: "
        "GOLDENHOUR_EDGE_HTTP_PORT; off when neither is set).")] = None,
    http_host: Annotated[str | None, typer.Option(
        help="Address the crew page binds to (default: GOLDENHOUR_EDGE_HTTP_HOST, "
        "127.0.0.1).")] = None,
    dicom_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Receive X-rays by DICOM C-STORE on this port, as an X-ray unit "
        "sends to PACS (default: GOLDENHOUR_EDGE_DICOM_PORT; off when neither is set).")] = None,
    watch: Annotated[Path | None, typer.Option(
        help="Diagnose every X-ray file dropped into this folder; processed files move to "
        "done/, unusable ones to failed/ with the reason (default: GOLDENHOUR_EDGE_WATCH_DIR).")
    ] = None,
) -> None:
    """Run the agent: announce the ambulance, report positions, and take X-rays
    from a DICOM C-STORE receiver (--dicom-port), a watched folder (--watch) or a
    simulated X-ray unit (--folder, one every --interval seconds); with
    --http-port, serve the crew page in the same process. Each image becomes a case."""
    settings = load_edge_settings()
    configure_logging(settings.log_level, settings.log_format, service=settings.ambulance_id)
    agent = EdgeAgent(settings)
    stop = stop_event()
    agent.start(wait=False)
    from edge_agent.model_update import ModelUpdater

    updater = ModelUpdater.from_settings(settings, agent.models)  # None unless configured
    if updater is not None:
        updater.start()
    crew = None
    port = http_port or settings.http_port
    if port:
        from edge_agent.web import CrewServer

        crew = CrewServer(agent, host=http_host or settings.http_host, port=port)
        crew.start()
        console.print(f"crew page: {crew.url}/")
    receivers = _start_receivers(agent, settings, dicom_port, watch)
    images = _images(folder) if folder else []
    random.Random(seed).shuffle(images)
    if folder and not images:
        logger.warning("no X-ray files (PNG, JPEG, DICOM) in %s", folder)
    elif not folder and not receivers and crew is None:
        logger.warning(
            "no X-ray source (--folder, --dicom-port, --watch or --http-port); send one with: "
            "goldenhour edge send PATH --ambulance-id %s", settings.ambulance_id)
    try:
        index = 0
        while not stop.wait(interval if index else min(interval, 2.0)):
            if not images:
                continue
            path = images[index % len(images)]
            index += 1
            try:
                agent.submit(path)
            except InputImageError as exc:
                logger.error("image not usable", extra={
                    "image": _digest(path), "detail": str(exc).replace(path.name, "<image>")})
            except GoldenhourError as exc:
                logger.error("case not queued", extra={
                    "image": _digest(path), "error": type(exc).__name__,
                    "detail": str(exc).replace(path.name, "<image>")})
            except Exception:  # one bad image must not stop the ambulance's agent
                logger.exception("case failed", extra={"image": _digest(path)})
    except KeyboardInterrupt:
        pass
    finally:
        for receiver in receivers:
            receiver.stop()
        if crew is not None:
            crew.stop()
        if updater is not None:
            updater.stop()
        agent.stop()


def _start_receivers(agent: EdgeAgent, settings: EdgeSettings, dicom_port: int | None,
                     watch: Path | None) -> list[Any]:
    """The DICOM receiver and the watched folder that were asked for, started.

    Their callback raises on a bad image, so the X-ray unit gets a failure
    status and a watched file moves to failed/ with the reason: nothing is lost
    silently.
    """
    from edge_agent.receivers import DicomStorageSCP, WatchFolder

    def on_image(path: Path) -> None:
        record = agent.submit(path)
        console.print(f"case {record.case_id}: triage {record.triage_level}")

    receivers: list[Any] = []
    port = dicom_port or settings.dicom_port
    if port:
        scp = DicomStorageSCP(settings.state_dir / "dicom-inbox", on_image, ae_title=settings.dicom_ae_title,
                              port=port, host=settings.dicom_host,
                              retention_s=settings.dicom_inbox_retention_h * 3600,
                              max_bytes=int(settings.dicom_inbox_max_mb * 1024 * 1024))
        scp.start()
        receivers.append(scp)
        console.print(f"DICOM C-STORE receiver: AE title {settings.dicom_ae_title} on port {scp.port}")
    folder = watch or settings.watch_dir
    if folder:
        watcher = WatchFolder(folder, on_image)
        watcher.start()
        receivers.append(watcher)
        console.print(f"watching {folder} ({watcher.watching})")
    return receivers


def _digest(path: Path) -> str:
    """A short, stable name for a file that does not repeat its (maybe personal) name."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@app.command()
def send(
    images: Annotated[list[Path], typer.Argument(help="X-ray files (PNG, JPEG, DICOM).")],
    ambulance_id: Annotated[str | None, typer.Option(help="Default: GOLDENHOUR_EDGE_AMBULANCE_ID.")]
    = None,
    count: Annotated[int, typer.Option(min=1, help="Send the list this many times.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each decision.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Diagnose X-rays, send each as a case and wait for the hub's decision,
    printing where the patient goes and the round-trip time."""
    overrides: dict[str, Any] = {"ambulance_id": ambulance_id} if ambulance_id else {}
    settings = load_edge_settings(**overrides)
    # A one-shot tool: its broker session ends with it (nothing queued for a dead client).
    settings = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"session_expiry_s": 0})})
    configure_logging(settings.log_level, settings.log_format, service="send")
    outbox = Path(tempfile.mkdtemp(prefix="goldenhour-send-")) / "outbox.sqlite3"
    agent = EdgeAgent(settings, announce=False, outbox_path=outbox,
                      client_id=f"goldenhour-send-{settings.ambulance_id}-{os.getpid()}")
    try:
        agent.start()
    except GoldenhourError as exc:
        console.print(f"[red]cannot reach the broker:[/] {exc}")
        agent.outbox.close()
        _discard_outbox(outbox)
        raise typer.Exit(2) from exc
    round_trips: list[float] = []
    submits: list[float] = []
    outcomes: dict[str, int] = {}
    failures = 0
    try:
        for _ in range(count):
            for path in images:
                try:
                    started = _now()
                    record = agent.submit(path)
                    if not record.sent.wait(timeout):
                        raise TimeoutError(f"the broker did not take case {record.case_id}")
                    submits.append((_now() - started) * 1000)
                    record = agent.wait_for_decision(record.case_id, timeout)
                except InputImageError as exc:
                    console.print(f"[red]{path}: not sent:[/] {exc}")
                    failures += 1
                    continue
                except (GoldenhourError, TimeoutError) as exc:
                    console.print(f"[red]{path}: {exc}[/]")
                    failures += 1
                    continue
                assert record.decision is not None and record.decision_latency_s is not None
                round_trips.append(record.decision_latency_s * 1000)
                outcomes[record.decision.status] = outcomes.get(record.decision.status, 0) + 1
                if not as_json:
                    console.print(f"{record.case_id} ({path.name}, triage {record.triage_level})"
                                  f": {record.decision.message} "
                                  f"[dim]{round_trips[-1]:.1f} ms round trip[/]")
    finally:
        _drain_and_stop(agent, timeout)
    if as_json:
        typer.echo(json.dumps({"count": len(round_trips), "failures": failures,
                               "outcomes": outcomes, "round_trip_ms": _stats(round_trips),
                               "submit_ms": _stats(submits)}))
    if failures:
        raise typer.Exit(1)


def _drain_and_stop(agent: EdgeAgent, timeout: float) -> None:
    """Let the outbox empty (the full images follow the diagnoses), then stop;
    a one-shot tool must not leave messages behind unsaid."""
    deadline = _now() + timeout
    while agent.outbox.pending()[0] and _now() < deadline:
        agent.sender.wake()
        time.sleep(0.1)
    left, _ = agent.outbox.pending()
    agent.stop()
    if left:
        console.print(f"[red]{left} message(s) not delivered; they stay in {agent.outbox.path}[/]")
        return
    _discard_outbox(agent.outbox.path)


def _discard_outbox(path: Path) -> None:
    """Delete a one-shot outbox and its temporary folder: nothing of it stays behind."""
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError as exc:  # something else was put there: leave it
        logger.debug("temporary folder kept", extra={"folder": str(path.parent), "error": str(exc)})


def _now() -> float:
    return time.monotonic()


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    return {"min": min(values), "median": statistics.median(values),
            "p95": percentile(values, 0.95), "max": max(values)}


@app.command("guard-report")
def guard_report(
    data: Annotated[Path | None, typer.Option(help="Data folder (default: GOLDENHOUR_DATA_DIR).")] = None,
    fit: Annotated[bool, typer.Option(help="Refit the orientation check on the fitting half first.")]
    = False,
    write: Annotated[bool, typer.Option(help="With --fit: write the parameters into "
                                        "edge_agent/orientation.py.")] = False,
) -> None:
    """Measure the image guard on turned and mirrored NIH films and on other
    pictures: fitted on one half of the patients, measured on the other
    (docs/image-guard.md)."""
    from rich.table import Table

    from edge_agent import guard_report as report
    from shared.datapaths import ENV_VAR, data_dir

    folder = data or data_dir()
    if folder is None or not (folder / "nih-cxr14-sample").is_dir():
        console.print(f"[red]no data folder: set {ENV_VAR} or pass --data[/red]")
        raise typer.Exit(2)
    fitting, held_out = report.nih_halves(folder)
    parameters = None
    if fit:
        from edge_agent.orientation import fit as fit_orientation

        parameters = fit_orientation(fitting)
        if write:
            report.write_parameters(parameters)
            console.print("parameters written into edge_agent/orientation.py")
    table = Table(title=f"Image guard: orientation, fitted on {len(fitting)} films, "
                        f"measured on {len(held_out)} others (other patients)")
    for column in ("images", "count", "refused by the orientation check", "refused by the whole guard"):
        table.add_column(column)
    for row in report.measure(held_out, parameters):
        table.add_row(*row.cells())
    console.print(table)
    console.print(f"orientation check: median {report.timing(held_out, parameters):.2f} ms per film")


@app.command()
def update(
    case_id: Annotated[str, typer.Argument(help="The case id that `send` printed.")],
    action: Annotated[str, typer.Option(help="cancel or divert.")] = "cancel",
    reason: Annotated[str, typer.Option(help="Why (required).")] = "",
    ambulance_id: Annotated[str | None, typer.Option(help="Default: GOLDENHOUR_EDGE_AMBULANCE_ID.")]
    = None,
) -> None:
    """Cancel a case (the patient will not be transported) or divert it (re-offer
    it from where the ambulance is now); the accepted ER is told."""
    from pydantic import ValidationError

    if action not in ("cancel", "divert"):
        raise typer.BadParameter("action must be cancel or divert")
    overrides: dict[str, Any] = {"ambulance_id": ambulance_id} if ambulance_id else {}
    settings = load_edge_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format, service="update")
    settings = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"session_expiry_s": 0})})
    outbox = Path(tempfile.mkdtemp(prefix="goldenhour-update-")) / "outbox.sqlite3"
    agent = EdgeAgent(settings, announce=False, outbox_path=outbox,
                      client_id=f"goldenhour-update-{settings.ambulance_id}-{os.getpid()}")
    try:
        agent.start()
        agent.update(case_id, action, reason=reason or None)
    except ValidationError as exc:
        console.print(f"[red]not sent:[/] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    except GoldenhourError as exc:
        console.print(f"[red]not sent:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        _drain_and_stop(agent, 30.0)
    console.print(f"{action} of {case_id} sent")
