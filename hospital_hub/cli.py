"""``goldenhour hub ...``: the hub worker, its web server and simulated ERs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from hospital_hub.export_cli import export_labelled_command
from hospital_hub.settings import load_hub_settings
from shared.errors import GoldenhourError
from shared.lifecycle import wait_for_stop
from shared.logs import configure_logging

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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
                log_config=None, access_log=False,
                timeout_graceful_shutdown=5)


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


# -- users and tokens -------------------------------------------------------------------------
def _user_engine() -> Engine:
    """The hub's database, migrated and with the registry loaded (users name hospitals)."""
    from hospital_hub.db import make_engine, migrate
    from hospital_hub.registry import import_registry

    settings = load_hub_settings()
    engine = make_engine(settings.database_url)
    migrate(engine)
    import_registry(engine, settings.registry_csv)
    return engine


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _problems(exc: Exception) -> str:
    """A validation error without the input values (which may hold a password)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]) for e in exc.errors())
    return str(exc)


@app.command("create-user")
def create_user(
    username: str,
    role: Annotated[Literal["admin", "dispatcher", "er_doctor", "service"],
                    typer.Option(help="admin, dispatcher, er_doctor (needs --hospital-id) or "
                                      "service (needs --hospital-id or --ambulance-id).")],
    hospital_id: Annotated[str | None, typer.Option(help="The ER of an er_doctor or ER client.")]
    = None,
    ambulance_id: Annotated[str | None, typer.Option(help="The ambulance of a service client.")]
    = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from the first line of "
                                                      "standard input instead of a prompt.")]
    = False,
    replace: Annotated[bool, typer.Option(help="Update the user if it exists (new password).")]
    = False,
) -> None:
    """Create a user of the web pages and API (people get a password; service
    clients get a token with create-token). Settings: GOLDENHOUR_HUB_DATABASE_URL."""
    from pydantic import ValidationError

    from hospital_hub.auth import create_user as store_user
    from hospital_hub.models import UserCreate

    password = None if role == "service" else _read_password(password_stdin)
    try:
        spec = UserCreate(username=username, role=role, hospital_id=hospital_id,
                          ambulance_id=ambulance_id, password=password)
        user = store_user(_user_engine(), spec, replace=replace)
    except (ValidationError, GoldenhourError) as exc:
        typer.echo(f"cannot create {username}: {_problems(exc)}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{user.username}: {user.role.value}"
               + (f" at {user.hospital_id}" if user.hospital_id else "")
               + (f" for ambulance {user.ambulance_id}" if user.ambulance_id else ""))
    if role == "service":
        typer.echo(f"now issue its token: goldenhour hub create-token {username}")


@app.command("create-token")
def create_token(username: str) -> None:
    """Issue a new API token for a service client and print it once (only its
    hash is stored; the previous token stops working)."""
    from hospital_hub.auth import create_token as issue

    try:
        token = issue(_user_engine(), username)
    except GoldenhourError as exc:
        typer.echo(f"cannot issue a token: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(token)


@app.command("list-users")
def list_users() -> None:
    """Every user with its role, binding and whether it has a password or token."""
    from hospital_hub.auth import list_users as users

    for user in users(_user_engine()):
        binding = user.hospital_id or user.ambulance_id or "-"
        secret = "password" if user.has_password else "token" if user.has_token else "no secret"
        typer.echo(f"{user.username:<24} {user.role.value:<11} {binding:<16} {secret:<9} "
                   f"{'active' if user.active else 'disabled'}")


@app.command("seed-demo-users")
def seed_demo_users(
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")]
    = False,
) -> None:
    """Create (or reset) the demo's users, all with one password: admin,
    dispatcher, and er-<hospital id> (an ER doctor) for every registry hospital."""
    from hospital_hub.auth import create_user as store_user
    from hospital_hub.models import UserCreate
    from hospital_hub.registry import read_registry

    password = _read_password(password_stdin)
    engine = _user_engine()
    specs = [UserCreate(username="admin", role="admin", password=password),
             UserCreate(username="dispatcher", role="dispatcher", password=password)]
    specs += [UserCreate(username=f"er-{h.id}", role="er_doctor", hospital_id=h.id,
                         password=password)
              for h in read_registry(load_hub_settings().registry_csv)]
    for spec in specs:
        store_user(engine, spec, replace=True)
    typer.echo(" ".join(s.username for s in specs))


app.command("export-labelled")(export_labelled_command)  # hospital_hub/export_cli.py
