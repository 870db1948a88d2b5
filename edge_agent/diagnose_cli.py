"""``goldenhour diagnose PATH...``: X-rays through the edge pipeline, offline.

No broker, no hub. Files, folders (searched recursively for DICOM, PNG and
JPEG) and globs are diagnosed in one process with the model loaded once (or in
``--workers`` processes). One image gets the detailed report; a batch a line
per image, ``--json`` JSON Lines (one object per image, with its path),
``--csv FILE`` a table. A bad file is reported and skipped. Exit status 0 when
every image was diagnosed, 1 when some failed, 2 when all failed, 3 when the
model cannot be loaded.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)
BACKENDS = ("openvino", "openvino-int8", "onnxruntime", "torch")


def diagnose(
    paths: Annotated[list[str], typer.Argument(
        help="DICOM, PNG or JPEG chest X-rays: files, folders (searched recursively) or globs.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON Lines: one diagnosis per line.")
                       ] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write a CSV table of the batch here.")
                        ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes, each with the model loaded once "
                                         "(pays only with more cores than threads).")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="Inference threads per process "
                                                "(default 2, or 1 with several workers).")] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal).")] = None,
    backend: Annotated[str, typer.Option(help=" | ".join(BACKENDS))] = "openvino",
    model: Annotated[str | None, typer.Option(help="Classifier name in the manifest.")] = None,
    overlays: Annotated[Path | None, typer.Option(help="Write the heat-map overlays (JPEG) here.")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Models folder (default: the repository's).")
                          ] = None,
    spo2: Annotated[int | None, typer.Option(help="SpO2 %")] = None,
    rr: Annotated[int | None, typer.Option(help="Respiratory rate /min")] = None,
    hr: Annotated[int | None, typer.Option(help="Heart rate /min")] = None,
    sbp: Annotated[int | None, typer.Option(help="Systolic blood pressure mmHg")] = None,
    temp: Annotated[float | None, typer.Option(help="Temperature °C")] = None,
    avpu: Annotated[str | None, typer.Option(help="A, C (new confusion), V, P or U")] = None,
    oxygen: Annotated[bool | None, typer.Option("--oxygen/--air", help="On supplemental oxygen?")] = None,
) -> None:
    """Diagnose X-rays offline: the 14 findings, the top 3, heat-map regions and
    triage, one file or a whole folder (AI result: NOT for clinical use)."""
    from rich.console import Console

    from edge_agent import batch
    from edge_agent.diagnose_output import CsvTable, json_line, print_detail, print_line, summary
    from shared.errors import ConfigurationError
    from shared.manifest import DEFAULT_MODELS_DIR, load_manifest

    if backend not in BACKENDS:
        raise typer.BadParameter(f"unknown backend {backend!r}")
    out, err = Console(), Console(stderr=True)
    items = batch.collect(paths)
    vitals = _vitals(spo2, rr, hr, sbp, temp, avpu, oxygen)
    from edge_agent.classifier import DEFAULT_CLASSIFIER

    spec = batch.PipelineSpec(backend, model or DEFAULT_CLASSIFIER, models_dir or DEFAULT_MODELS_DIR,
                              threads or (1 if workers > 1 else 2))
    pipeline = None
    try:
        if workers == 1 or len(items) < 2:
            pipeline = batch.build(spec)
        else:  # each worker loads its own; a model missing from the manifest fails here, once
            load_manifest(spec.models_dir).find(spec.model)
    except ConfigurationError as exc:
        err.print(f"[red]cannot load the model:[/] {exc}")
        raise typer.Exit(3) from exc
    detail = len(items) == 1 and not as_json
    show_progress = sys.stderr.isatty() if progress is None else progress
    table_file = csv_path.open("w", newline="", encoding="utf-8") if csv_path else None
    table = CsvTable(table_file) if table_file else None
    failed = 0
    started = time.perf_counter()
    bar = _progress(err, len(items)) if show_progress and len(items) > 1 else None
    try:
        for outcome in batch.run(items, spec, vitals, workers=workers, pipeline=pipeline):
            if outcome.diagnosis is None:
                failed += 1
                err.print(f"[red]cannot diagnose {outcome.path}:[/] {outcome.error}", highlight=False,
                          soft_wrap=True)
            elif overlays is not None:
                overlays.mkdir(parents=True, exist_ok=True)
                for overlay in outcome.diagnosis.overlays or []:
                    (overlays / f"{outcome.path.stem}-{overlay.finding}.jpg").write_bytes(overlay.jpeg)
            if as_json:
                typer.echo(json_line(outcome))
            elif detail and outcome.diagnosis is not None:
                print_detail(out, outcome.diagnosis)
            else:
                print_line(out, outcome)
            if table is not None:
                table.write(outcome)
            if bar is not None:
                bar[0].advance(bar[1])
    finally:
        if bar is not None:
            bar[0].stop()
        if table_file is not None:
            table_file.close()
    if len(items) > 1:
        err.print(summary(len(items), failed, time.perf_counter() - started), highlight=False,
                  soft_wrap=True)
    if failed:
        raise typer.Exit(2 if failed == len(items) else 1)


def _vitals(spo2: int | None, rr: int | None, hr: int | None, sbp: int | None, temp: float | None,
            avpu: str | None, oxygen: bool | None) -> object:
    if all(v is None for v in (spo2, rr, hr, sbp, temp, avpu, oxygen)):
        return None
    from datetime import UTC, datetime

    from shared.messages import Vitals

    return Vitals(taken_at=datetime.now(UTC), spo2_pct=spo2, resp_rate=rr, heart_rate=hr,
                  systolic_bp=sbp, temperature_c=temp, avpu=avpu,  # type: ignore[arg-type]
                  supplemental_o2=oxygen)


def _progress(console: object, total: int) -> tuple[object, object]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("diagnosing", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True)  # type: ignore[arg-type]
    task = bar.add_task("diagnose", total=total)
    bar.start()
    return bar, task
