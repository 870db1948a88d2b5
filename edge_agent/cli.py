"""``goldenhour edge ...``: the ambulance agent and a one-shot sender."""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from edge_agent.agent import EdgeAgent
from edge_agent.runtime import EdgeRuntime, XraySources
from edge_agent.settings import load_edge_settings
from shared.errors import ConfigurationError, GoldenhourError, InputImageError
from shared.lifecycle import stop_event
from shared.logs import configure_logging
from shared.stats import percentile

app = typer.Typer(help="Edge agent for the ambulance computer.", no_args_is_help=True)
logger = logging.getLogger(__name__)
console = Console()


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
    if folder is not None and not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    stop = stop_event()
    try:
        runtime = EdgeRuntime(settings, sources=XraySources(dicom_port=dicom_port, watch=watch, folder=folder,
                                                            interval_s=interval, seed=seed),
                              http_port=http_port, http_host=http_host,
                              on_case=lambda record: console.print(
                                  f"case {record.case_id}: triage {record.triage_level}"))
    except ConfigurationError as exc:  # a missing or altered model or guard: say so, no traceback
        console.print(f"[red]the edge cannot start:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    try:
        runtime.start(wait=False)
        _say_where_xrays_come_from(runtime)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()


def _say_where_xrays_come_from(runtime: EdgeRuntime) -> None:
    from edge_agent.receivers import DicomStorageSCP, WatchFolder

    if runtime.crew is not None:
        console.print(f"crew page: {runtime.crew.url}/")
    for receiver in runtime.receivers:
        if isinstance(receiver, DicomStorageSCP):
            console.print(f"DICOM C-STORE receiver: AE title {runtime.settings.dicom_ae_title} "
                          f"on port {receiver.port}")
        elif isinstance(receiver, WatchFolder):
            console.print(f"watching {receiver.folder} ({receiver.watching})")
    if not runtime.has_xray_source:
        logger.warning(
            "no X-ray source (--folder, --dicom-port, --watch or --http-port); send one with: "
            "goldenhour edge send PATH --ambulance-id %s", runtime.settings.ambulance_id)


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
