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
from training.cli import DataOption, _data_root, app, console, invocation

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


@app.command("guard")
def guard(
    version: Annotated[str, typer.Option(help="Version of the chest-guard model to write (a new one).")],
    folder: DataOption = None,
    models_dir: Annotated[Path, typer.Option(help="Models folder with manifest.json.")] = DEFAULT_MODELS_DIR,
) -> None:
    """Fit the chest-radiograph guard on the NIH sample (grey statistics on every film,
    the orientation check on one half of the patients) and write it as the chest-guard
    model: two JSON files and their manifest entry (docs/image-guard.md)."""
    from training.guard import write_guard

    try:
        entry = write_guard(_data_root(folder), models_dir, version, command=invocation())
    except GoldenhourError as exc:
        err_console.print(f"[red]not fitted:[/] {exc}")
        raise typer.Exit(2) from exc
    for file in entry.files:
        console.print(f"{file.path}: {file.bytes} bytes, sha256 {file.sha256}")
    console.print(f"{entry.key} added to {models_dir / 'manifest.json'}; {entry.metrics[0].name} "
                  f"{entry.metrics[0].value:.2%} ({entry.metrics[0].data})")


@app.command("guard-report")
def guard_report(folder: DataOption = None) -> None:
    """False refusals of the shipped image guard on real chest X-rays (in-sample, held out,
    full resolution, altered, DICOM) and its refusals of other pictures (about 1 min)."""
    from rich.table import Table

    from training.guard_report import report

    table = Table(title="Out-of-distribution guard")
    for column in ("images", "count", "flagged not a CXR", "rate", "refused by load_image"):
        table.add_column(column)
    tallies = report(_data_root(folder))
    for group, tally in tallies.items():
        rate = tally.flagged / tally.total if tally.total else 0.0
        table.add_row(group, str(tally.total), str(tally.flagged), f"{rate:.1%}", str(tally.loader))
    console.print(table)
    for group, tally in tallies.items():
        for example in tally.examples:
            console.print(f"wrong answer, {group}: {example}", markup=False, highlight=False)


@app.command("orientation-report")
def orientation_report(
    folder: DataOption = None,
    refit: Annotated[bool, typer.Option(help="Refit the orientation check on the fitting half first "
                                        "(measured, not written: `train guard` writes).")] = False,
) -> None:
    """Measure the image guard on turned and mirrored NIH films and on other pictures:
    fitted on one half of the patients, measured on the other (docs/image-guard.md)."""
    from rich.table import Table

    from training import guard_report as report
    from training.guard import fit_orientation

    fitting, held_out = report.nih_halves(_data_root(folder))
    parameters = fit_orientation(fitting) if refit else None
    table = Table(title=f"Image guard: orientation, fitted on {len(fitting)} films, "
                        f"measured on {len(held_out)} others (other patients)")
    for column in ("images", "count", "refused by the orientation check", "refused by the whole guard"):
        table.add_column(column)
    for row in report.measure(held_out, parameters):
        table.add_row(*row.cells())
    console.print(table)
    console.print(f"orientation check: median {report.timing(held_out, parameters):.2f} ms per film")
