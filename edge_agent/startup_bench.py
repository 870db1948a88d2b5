"""``goldenhour bench startup``: how long a user waits for ``goldenhour --help``
and for a one-file ``goldenhour diagnose``, each a fresh process, as a user
starts them; min, median and max over several runs.

The one-file diagnose is timed with OpenVINO's compile cache warm (the normal
case from the second start on) and cold (a new, empty cache folder per run).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.datapaths import data_dir


def _default_image() -> Path:
    root = data_dir()
    images = sorted((root / "nih-cxr14-sample" / "images").glob("*.png")) if root else []
    if not images:
        raise typer.BadParameter("no --image given and no NIH sample in the data folder "
                                 "(GOLDENHOUR_DATA_DIR)")
    return images[0]


def time_command(args: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``goldenhour ARGS`` in a fresh process (it must succeed)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shared.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3), "runs": len(values)}


def bench_startup(
    runs: Annotated[int, typer.Option(min=1, help="Fresh processes per command.")] = 5,
    image: Annotated[Path | None, typer.Option(help="X-ray for the one-file diagnose "
                                               "(default: the first NIH sample image).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Start-up time of `goldenhour --help` and of a one-file `goldenhour diagnose`
    (OpenVINO compile cache warm and cold), min/median/max wall seconds over fresh processes."""
    image = image or _default_image()
    with tempfile.TemporaryDirectory() as tmp:
        warm_env = {**os.environ, "GOLDENHOUR_CACHE_DIR": str(Path(tmp) / "warm")}
        time_command(["diagnose", str(image)], warm_env)  # fills the warm cache
        cold: list[float] = []
        for run in range(runs):
            cold.append(time_command(["diagnose", str(image)],
                                     {**os.environ, "GOLDENHOUR_CACHE_DIR": str(Path(tmp) / f"cold-{run}")}))
        report: dict[str, Any] = {
            "image": str(image), "cpus": os.cpu_count(),
            "goldenhour --help": _stats([time_command(["--help"]) for _ in range(runs)]),
            "diagnose, compile cache warm": _stats(
                [time_command(["diagnose", str(image)], warm_env) for _ in range(runs)]),
            "diagnose, compile cache cold": _stats(cold),
        }
    if as_json:
        typer.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"wall seconds per fresh process, {runs} runs, {report['cpus']} CPUs")
    for column in ("command", "min", "median", "max"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for name, stats in report.items():
        if isinstance(stats, dict):
            table.add_row(name, *(f"{stats[k]:.3f}" for k in ("min", "median", "max")))
    Console().print(table)
