"""The system-wide sub-commands of ``goldenhour`` that live in ``shared/``:
``demo``, ``broker`` and ``bench e2e``. ``shared/cli.py`` loads this module
only when one of them runs, so ``goldenhour --help`` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.broker import BrokerKind
from shared.logs import configure_logging
from shared.settings import LogFormat

console = Console()


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
    human_er: Annotated[list[str] | None, typer.Option(
        help="Leave this ER (hospital id, e.g. bos-mgh; repeatable) to a person: no simulated "
        "doctor answers its offers, you do in its ER console.")] = None,
) -> None:
    """Run the whole system on this machine: broker, hub with web pages,
    simulated ERs and ambulances. Ctrl-C stops everything."""
    from shared.supervisor import DemoOptions, run_demo

    configure_logging("INFO", log_format, service="demo")
    raise typer.Exit(run_demo(DemoOptions(
        ambulances=ambulances, images=images, interval_s=interval, http_port=port,
        state_dir=state_dir, broker=broker, accept_probability=accept_probability,
        duration_s=duration, log_format=log_format, human_ers=tuple(human_er or ()),
    )))


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


def broker(
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
