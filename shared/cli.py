"""The ``goldenhour`` command. Services add sub-commands through the
``goldenhour.commands`` entry-point group, so this module imports none of them
and a box without an extra installed still gets a clear message."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared import __version__
from shared.broker import BrokerKind
from shared.logs import configure_logging
from shared.settings import LogFormat

app = typer.Typer(
    name="goldenhour",
    help="From a chest X-ray in an ambulance to an ER that has agreed to take the patient. "
    "AI results are NOT for clinical use.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
logger = logging.getLogger(__name__)


def _missing_extra(name: str, error: Exception) -> typer.Typer:
    stub = typer.Typer(help=f"(unavailable: {error})", invoke_without_command=True)

    @stub.callback()
    def unavailable() -> None:
        console.print(f"[red]'goldenhour {name}' needs the '{name}' extra:[/] {error}\n"
                      f"install it with: pip install 'goldenhour[{name}]'")
        raise typer.Exit(2)

    return stub


def _register_plugins() -> None:
    for entry in sorted(entry_points(group="goldenhour.commands"), key=lambda e: e.name):
        try:
            sub = entry.load()
        except ImportError as exc:
            sub = _missing_extra(entry.name, exc)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=entry.name)
        else:  # a single command, e.g. ``goldenhour diagnose PATH``
            app.command(entry.name)(sub)
    for entry in sorted(entry_points(group="goldenhour.bench"), key=lambda e: e.name):
        try:
            bench_app.command(entry.name)(entry.load())
        except ImportError as exc:
            bench_app.add_typer(_missing_extra(entry.name, exc), name=entry.name)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    """goldenhour command line."""
    if version:
        console.print(__version__)
        raise typer.Exit()


@app.command()
def topics(
    markdown: Annotated[bool, typer.Option(help="Print the Markdown table of docs/mqtt.md.")]
    = False,
) -> None:
    """List every MQTT topic of the contract with its schema, QoS and retain flag."""
    from shared.topics import TOPICS

    if markdown:
        console.print(topic_table_markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("topic", "schema", "QoS", "retain", "from -> to")
    for spec in TOPICS:
        table.add_row(spec.pattern, f"{spec.payload.SCHEMA} v{spec.payload.VERSION}",
                      str(spec.qos), "yes" if spec.retain else "no",
                      f"{spec.publisher} -> {spec.subscriber}")
    console.print(table)


def topic_table_markdown() -> str:
    """The topic table as Markdown (kept in docs/mqtt.md; a test compares them)."""
    from shared.topics import TOPICS

    lines = ["| topic | payload | QoS | retain | from | to | meaning |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec in TOPICS:
        lines.append(
            f"| `{spec.pattern}` | `{spec.payload.SCHEMA}` v{spec.payload.VERSION} | {spec.qos} "
            f"| {'yes' if spec.retain else 'no'} | {spec.publisher} | {spec.subscriber} "
            f"| {spec.description} |"
        )
    return "\n".join(lines)


@app.command()
def demo(
    ambulances: Annotated[int, typer.Option(min=0, max=20, help="Simulated ambulances.")] = 2,
    images: Annotated[Path | None, typer.Option(help="Folder of X-rays for the ambulances "
                                                "(default: the NIH sample in the data folder).")]
    = None,
    interval: Annotated[float, typer.Option(help="Seconds between X-rays per ambulance.")] = 30.0,
    port: Annotated[int, typer.Option(help="Hub web port.")] = 8000,
    state_dir: Annotated[Path, typer.Option(help="SQLite database and broker state.")]
    = Path(".goldenhour"),
    broker: Annotated[BrokerKind, typer.Option(help="Embedded broker.")] = "auto",
    accept_probability: Annotated[float, typer.Option(min=0, max=1)] = 0.5,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")]
    = None,
    log_format: Annotated[LogFormat, typer.Option()] = "text",
) -> None:
    """Run the whole system on this machine: broker, hub with web pages,
    simulated ERs and ambulances. Ctrl-C stops everything."""
    from shared.supervisor import DemoOptions, run_demo

    configure_logging("INFO", log_format, service="demo")
    raise typer.Exit(run_demo(DemoOptions(
        ambulances=ambulances, images=images, interval_s=interval, http_port=port,
        state_dir=state_dir, broker=broker, accept_probability=accept_probability,
        duration_s=duration, log_format=log_format,
    )))


@bench_app.command("e2e")
def bench_e2e(
    cases: Annotated[int, typer.Option(min=1, help="Cases to send one after another.")] = 20,
    image: Annotated[Path | None, typer.Option(help="X-ray to send (default: a real DICOM "
                                               "from the data folder, else a generated one).")]
    = None,
    broker: Annotated[BrokerKind, typer.Option()] = "auto",
) -> None:
    """End-to-end latency on loopback: diagnosis published -> hub -> 3 offers ->
    ER accepts at once -> decision received by the ambulance. Broker, hub, ERs
    and ambulance run as separate processes."""
    from shared.supervisor import run_bench_e2e

    configure_logging("WARNING", "text", service="bench")
    raise typer.Exit(run_bench_e2e(cases=cases, image=image, broker=broker))


@app.command("broker")
def broker_cmd(
    port: Annotated[int, typer.Option()] = 1883,
    kind: Annotated[BrokerKind, typer.Option()] = "auto",
) -> None:
    """Run the embedded broker in the foreground on 127.0.0.1."""
    from shared.broker import start_embedded_broker
    from shared.lifecycle import wait_for_stop

    configure_logging("INFO", "text", service="broker")
    running = start_embedded_broker(kind, port=port)
    console.print(f"broker listening on 127.0.0.1:{running.port} (MQTT {running.protocol}); "
                  "Ctrl-C stops it")
    try:
        wait_for_stop()
    finally:
        running.stop()


def main() -> None:
    """Console-script entry point."""
    _register_plugins()
    app()


if __name__ == "__main__":
    main()
