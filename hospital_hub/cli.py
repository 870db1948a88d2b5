"""``goldenhour hub ...``: the hub worker, its web server and simulated ERs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from hospital_hub.settings import load_hub_settings
from shared.errors import GoldenhourError
from shared.lifecycle import wait_for_stop
from shared.logs import configure_logging

app = typer.Typer(help="Hospital hub: stores cases, offers them to ERs, relays decisions.",
                  no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")]
    = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default from settings).")] = None,
) -> None:
    """Run a hub worker with its web pages and API (settings: GOLDENHOUR_HUB_*)."""
    import uvicorn

    from hospital_hub.api import create_app
    from hospital_hub.runtime import HubRuntime

    settings = load_hub_settings()
    configure_logging(settings.log_level, settings.log_format, service="hub")
    # Serve the consoles even while the broker is unreachable; the outbox keeps
    # every message until the connection is up.
    app_ = create_app(HubRuntime(settings), wait_for_broker=False)
    uvicorn.run(app_, host=host or settings.http_host, port=port or settings.http_port,
                log_config=None, access_log=False)


@app.command()
def worker() -> None:
    """Run a hub worker without HTTP (extra workers of a scaled-out hub)."""
    from hospital_hub.runtime import HubRuntime

    settings = load_hub_settings()
    configure_logging(settings.log_level, settings.log_format, service="hub")
    runtime = HubRuntime(settings)
    try:
        runtime.start(wait=False)
    except GoldenhourError as exc:
        typer.echo(f"hub could not start: {exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        wait_for_stop()
    finally:
        runtime.stop()


@app.command("simulate-ers")
def simulate_ers(
    policy: Annotated[Literal["chance", "accept", "decline"],
                      typer.Option(help="How the simulated doctors answer.")] = "chance",
    accept_probability: Annotated[float, typer.Option(min=0, max=1)] = 0.5,
    delay: Annotated[float, typer.Option(min=0, help="Seconds before answering.")] = 3.0,
    registry: Annotated[Path | None, typer.Option(help="Registry CSV (default: the hub's).")]
    = None,
) -> None:
    """Connect one simulated ER per registry hospital; they answer offers over MQTT."""
    from hospital_hub.registry import read_registry
    from hospital_hub.simulated_er import SimulatedEr, always, chance

    settings = load_hub_settings()
    configure_logging(settings.log_level, settings.log_format, service="ers")
    chosen = chance(accept_probability) if policy == "chance" else always(policy)
    ers = [SimulatedEr.connect(h.id, settings.mqtt, chosen, delay_s=delay,
                               er_beds_free=h.er_beds)
           for h in read_registry(registry or settings.registry_csv)]
    try:
        for er in ers:
            er.start()
        wait_for_stop()
    except GoldenhourError as exc:
        typer.echo(f"simulated ERs could not start: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        for er in ers:
            er.stop()


@app.command("check-registry")
def check_registry(path: Path) -> None:
    """Validate a hospital registry CSV and report every bad row."""
    from hospital_hub.registry import read_registry

    try:
        hospitals = read_registry(path)
    except GoldenhourError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{path}: {len(hospitals)} hospitals, all valid")
