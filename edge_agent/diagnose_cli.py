"""``goldenhour diagnose PATH``: one X-ray through the edge pipeline, offline.

No broker, no hub: the result is printed (a table, or ``--json``), and the
heat-map overlays can be written as JPEG files. Exit status 0 on a diagnosis,
2 when the image cannot be used (the reason is printed), 3 when the model
cannot be loaded.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from shared.errors import ConfigurationError, InputImageError
from shared.messages import DiagnosisV1, Position, Vitals

console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger(__name__)

Backend = Literal["openvino", "openvino-int8", "onnxruntime", "torch"]


def _backend_config(name: str) -> object:
    from edge_agent.backends import OnnxRuntimeConfig, OpenVinoConfig, TorchConfig

    return {"openvino": OpenVinoConfig(), "openvino-int8": OpenVinoConfig(precision="int8"),
            "onnxruntime": OnnxRuntimeConfig(), "torch": TorchConfig()}[name]


def diagnose(
    path: Annotated[Path, typer.Argument(help="A DICOM, PNG or JPEG chest X-ray.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis message as JSON.")] = False,
    backend: Annotated[str, typer.Option(help="openvino | openvino-int8 | onnxruntime | torch")
                       ] = "openvino",
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
    """Diagnose one X-ray file offline: the 14 findings, the top 3, heat-map regions
    and triage (AI result: NOT for clinical use)."""
    from edge_agent.classifier import DEFAULT_CLASSIFIER, load_classifier
    from edge_agent.pipeline import DiagnosisPipeline
    from shared.manifest import DEFAULT_MODELS_DIR

    if backend not in ("openvino", "openvino-int8", "onnxruntime", "torch"):
        raise typer.BadParameter(f"unknown backend {backend!r}")
    try:
        pipeline = DiagnosisPipeline(load_classifier(_backend_config(backend),  # type: ignore[arg-type]
                                                     name=model or DEFAULT_CLASSIFIER,
                                                     models_dir=models_dir or DEFAULT_MODELS_DIR))
    except ConfigurationError as exc:
        err_console.print(f"[red]cannot load the model:[/] {exc}")
        raise typer.Exit(3) from exc
    vitals = None
    if any(v is not None for v in (spo2, rr, hr, sbp, temp, avpu, oxygen)):
        vitals = Vitals(taken_at=datetime.now(UTC), spo2_pct=spo2, resp_rate=rr, heart_rate=hr,
                        systolic_bp=sbp, temperature_c=temp, avpu=avpu,  # type: ignore[arg-type]
                        supplemental_o2=oxygen)
    try:
        result = pipeline.run(path, ambulance_id="offline", position=Position(lat=0, lon=0), vitals=vitals)
    except InputImageError as exc:
        err_console.print(f"[red]cannot diagnose {path.name}:[/] {exc}")
        raise typer.Exit(2) from exc
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
        for overlay in result.overlays or []:
            (overlays / f"{path.stem}-{overlay.finding}.jpg").write_bytes(overlay.jpeg)
    if as_json:
        typer.echo(json.dumps(result.model_dump(
            mode="json", exclude={"image": {"thumbnail_jpeg"}, "overlays": {"__all__": {"jpeg"}}}), indent=2))
    else:
        _print(result)


def _print(result: DiagnosisV1) -> None:
    model = result.model
    console.print(f"[bold]{result.image.source}[/] ({result.image.format}, {result.image.width}x"
                  f"{result.image.height}) - model {model.name} {model.version}"
                  f"{' [red](PLACEHOLDER)[/]' if model.placeholder else ''}"
                  " - [yellow]not for clinical use[/]")
    table = Table()
    table.add_column("finding")
    table.add_column("probability", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("")
    for score in sorted(result.findings, key=lambda s: -s.probability):
        table.add_row(str(score.finding), f"{score.probability:.3f}", f"{score.threshold:.3f}",
                      "[bold red]above[/]" if score.positive else "")
    console.print(table)
    console.print("top 3: " + ", ".join(result.top3))
    for region in result.regions:
        console.print(f"region ({region.source}): {region.finding} x {region.x1:.2f}-{region.x2:.2f}, "
                      f"y {region.y1:.2f}-{region.y2:.2f}")
    console.print(f"triage level {result.triage.level} ({result.triage.label}): "
                  + "; ".join(result.triage.reasons))
    console.print("timings ms: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items()))
