"""``goldenhour train`` commands that make model artifacts besides the trained
classifier and detector: a Keras classifier brought in (``import-keras``) and
the image guard's fitted parameters (``guard``), with the guard's reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.errors import GoldenhourError
from shared.manifest import DEFAULT_MODELS_DIR
from training.cli import app, console, invocation

err_console = Console(stderr=True)


@app.command("import-keras")
def import_keras(
    model: Annotated[Path, typer.Argument(help="A Keras model: .keras, .h5 or a SavedModel folder.")],
    name: Annotated[str, typer.Option(help="Name in the manifest (lower case, digits, . _ -).")],
    labels: Annotated[str, typer.Option(help="The model's 14 outputs in order, comma-separated finding "
                                        "names (e.g. Atelectasis,Cardiomegaly,...).")],
    input_spec: Annotated[str, typer.Option("--input", help="The model's own normalisation of 0..255 "
                                            "pixels: raw, unit (/255), imagenet, tf (-1..1) or "
                                            "scale=S,mean=M[/M/M],std=S[/S/S].")],
    parity_images: Annotated[Path | None, typer.Option(
        help="Folder of real X-rays (PNG/JPEG) for the parity check (default: 8 NIH sample images "
        "from the data folder).")] = None,
    version: Annotated[str, typer.Option(help="Version in the manifest.")] = "1.0.0",
    outputs: Annotated[str, typer.Option(help="What the model ends with: probabilities (sigmoid) "
                                         "or logits.")] = "probabilities",
    thresholds: Annotated[str | None, typer.Option(help="14 operating thresholds, in the --labels order.")
                          ] = None,
    data: Annotated[str, typer.Option(help="What the model was trained on (for the manifest).")]
    = "not stated: a Keras model brought by its user",
    tolerance: Annotated[float, typer.Option(help="Largest probability difference allowed against Keras.")
                         ] = 0.01,
    models_dir: Annotated[Path, typer.Option(help="Models folder with manifest.json.")] = DEFAULT_MODELS_DIR,
) -> None:
    """Convert a Keras classifier through OpenVINO's converter into the edge's input
    contract, add it to the manifest (sha256, labels, input contract, thresholds) and
    check it against Keras on real images (needs the keras extra)."""
    from rich.markup import escape

    from shared.datapaths import data_dir

    try:
        from training.keras_import import import_keras as convert
    except ImportError as exc:
        err_console.print(f"[red]import-keras needs the keras extra (pip install 'goldenhour[keras]'):[/] "
                          f"{exc}")
        raise typer.Exit(1) from exc
    if parity_images is None:
        root = data_dir()
        images = sorted((root / "nih-cxr14-sample" / "images").glob("*.png"))[:8] if root else []
    else:
        images = sorted(p for p in parity_images.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    try:
        result = convert(model, name=name, labels=labels, input_spec=input_spec, parity_images=images,
                         models_dir=models_dir, version=version, outputs=outputs, thresholds=thresholds,
                         data=data, tolerance=tolerance, command=invocation())
    except GoldenhourError as exc:
        err_console.print(f"[red]not imported:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(f"{result.entry.key} added to {models_dir / 'manifest.json'}: input "
                  f"{result.entry.input.size} px grey; OpenVINO vs Keras max probability difference "
                  f"{result.max_abs_diff:.5f} on {result.images} real images. Not for clinical use.")
