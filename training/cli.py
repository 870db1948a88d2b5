"""``goldenhour train ...``: data checks now; training comes with its own issues."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.datapaths import ENV_VAR, data_dir
from shared.findings import FINDINGS, NO_FINDING

app = typer.Typer(help="Training and data tools (the train extra adds torch).",
                  no_args_is_help=True)
console = Console()


@app.command("data-summary")
def data_summary(
    folder: Annotated[Path | None, typer.Option(help=f"Data folder (default: ${ENV_VAR} "
                                                "or ../shared/data).")] = None,
) -> None:
    """Count images, patients and positives per finding in the NIH sample."""
    root = folder or data_dir()
    labels = root / "nih-cxr14-sample" / "labels.csv" if root else None
    if labels is None or not labels.is_file():
        console.print(f"[red]no NIH sample found[/]; set {ENV_VAR} to the data folder "
                      "(see README: obtaining the data)")
        raise typer.Exit(2)
    with labels.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(row["Finding Labels"].split("|"))
    patients = {row["Patient ID"] for row in rows}
    table = Table(title=f"{labels}: {len(rows)} images of {len(patients)} patients")
    table.add_column("finding")
    table.add_column("positives", justify="right")
    for finding in FINDINGS:
        table.add_row(str(finding), str(counts.get(str(finding), 0)))
    table.add_row(NO_FINDING, str(counts.get(NO_FINDING, 0)))
    console.print(table)
