"""``goldenhour train`` commands that turn a run's out-of-fold results into what
ships: folds joined, folds calibrated, ensembles scored, operating points, region
sources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli import DataOption, _data_root, app, console, invocation


@app.command("operating-points")
def operating_points(
    run: Annotated[Path, typer.Option(help="A run folder made by 'train classify' (all folds).")
                   ] = Path("runs/classifier"),
    specificity: Annotated[float, typer.Option(min=0.5, max=0.999, help="Target specificity of "
                                               "every finding's operating point.")] = 0.90,
    specificity_for: Annotated[list[str] | None, typer.Option(
        "--specificity-for", help="A finding's own target, e.g. Pneumothorax=0.95 (repeat).")] = None,
    folder: DataOption = None,
) -> None:
    """Operating points at a stated specificity from a run's out-of-fold predictions, with
    cross-fitted sensitivity, specificity, PPV and NPV (95% patient-bootstrap intervals) and the
    image-only triage before and after; 'train export' ships them in the manifest."""
    from training.run_operating_points import run_operating_points

    overrides = {}
    for item in specificity_for or []:
        name, _, value = item.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError as exc:
            raise typer.BadParameter(f"{item!r}: expected FINDING=SPECIFICITY") from exc
    try:
        run_operating_points(run, _data_root(folder), specificity, overrides, console,
                             command=invocation())
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"wrote {run / 'operating_points.json'} and {run / 'operating-points.md'}")

@app.command("calibrate-folds")
def calibrate_folds_command(
    run: Annotated[Path, typer.Option(help="A run folder made by 'train classify' (with fold models).")
                   ] = Path("runs/classifier"),
    cache_file: Annotated[Path | None, typer.Option(help="The run's cached views ('train classify "
                                                    "--cache-file'), to skip recomputing them.")] = None,
    folder: DataOption = None,
) -> None:
    """Pool out-of-fold predictions without per-fold scale artefacts: each fold model
    calibrated on its own inner early-stopping slice; writes oof-foldcal.csv, which
    'train compare-runs' includes."""
    import torch

    from training.fold_calibration import calibrate_folds

    cache = torch.load(cache_file, weights_only=True)["cache"] if cache_file else None
    console.print(f"wrote {calibrate_folds(run, _data_root(folder), cache)}")

@app.command("merge-folds")
def merge_folds_command(
    part: Annotated[list[Path], typer.Option(help="Run folders that each ran some folds (repeat).")],
    out: Annotated[Path, typer.Option(help="The joined run folder ('train classify --final-only' next).")],
    cache_file: Annotated[Path, typer.Option(help="The parts' cached views ('--cache-file').")],
    partial: Annotated[bool, typer.Option(help="Allow folds no part holds (left unscored).")] = False,
    folder: DataOption = None,
) -> None:
    """Join the folds of one cross-validation run in several processes ('classify
    --only-folds') into one run folder, re-scoring every held-out image."""
    import torch

    from training.merge_folds import merge_folds

    summary = merge_folds(part, out, _data_root(folder), torch.load(cache_file, weights_only=True)["cache"],
                          invocation(), partial=partial)
    console.print(f"joined {len(part)} parts into {out}: out-of-fold mean AUC {summary['oof_mean_auc']:.4f}, "
                  f"{summary['oof_mean_auc_jrzech']:.4f} on {summary['jrzech_images']} jrzech images")

@app.command("ensemble-oof")
def ensemble_oof_command(
    run: Annotated[list[Path], typer.Option(help="Runs on the same folds, each after 'train "
                                            "calibrate-folds' (repeat).")],
    out: Annotated[Path, typer.Option(help="Folder for the ensemble's oof.csv ('train compare-runs' "
                                      "reads it like a run's).")],
) -> None:
    """Score the ensemble of several runs out of fold: each image's per-fold-calibrated
    logits averaged over the runs' models that held it out."""
    from training.ensemble import average_runs

    console.print(f"wrote {average_runs(run, out)}")


@app.command("edge-cost")
def edge_cost_command(
    candidates: Annotated[str, typer.Option(help="Comma-separated candidates, the first the baseline; "
                                            "join backbones with + for an ensemble.")
                          ] = "efficientnet-lite0,efficientnet-lite1,efficientnet-lite2,"
                              "efficientnet-lite0+efficientnet-lite1",
    size: Annotated[int, typer.Option(help="Input side in pixels.")] = 384,
    runs: Annotated[int, typer.Option(min=5, help="Timed inferences per candidate.")] = 50,
) -> None:
    """The classify-stage cost of candidate classifiers on this CPU (OpenVINO FP16, the edge's
    compile settings), as ratios to the first, measured in one run."""
    from rich.table import Table

    from training.edge_cost import measure

    table = Table(title=f"classify stage at {size} px, OpenVINO FP16, ms per image over {runs} runs")
    for column in ("candidate", "p50", "p95", "x first", "IR MB"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for cost in measure([c.strip() for c in candidates.split(",") if c.strip()], size, runs):
        table.add_row(cost.candidate, f"{cost.p50_ms:.1f}", f"{cost.p95_ms:.1f}", f"{cost.ratio:.2f}",
                      f"{cost.ir_mb:.1f}")
    console.print(table)


@app.command("region-sources")
def region_sources_command(
    run: Annotated[Path, typer.Option(help="A run folder after 'train evaluate-localisation'.")
                   ] = Path("runs/classifier"),
    folder: DataOption = None,
) -> None:
    """Per finding, heat map or detector: whichever points into the radiologist's box more
    often on the fold held out from both; 'train export' ships the choice."""
    from training.region_sources import measure, write

    path = write(measure(run, _data_root(folder)), run, command=invocation())
    console.print(path.read_text(encoding="utf-8"))


@app.command("recalibrate")
def recalibrate_command(
    run: Annotated[Path, typer.Option(help="A complete cross-validation of the model's recipe, with "
                                      "'train operating-points' done.")],
    name: Annotated[str, typer.Option(help="The shipped model's name.")] = "chest-effnetlite0",
    from_version: Annotated[str, typer.Option(help="Its version now.")] = "1.1.0",
    version: Annotated[str, typer.Option(help="The new version.")] = "1.1.1",
    models_dir: Annotated[Path, typer.Option(help="The models folder.")] = Path("models"),
    replace: Annotated[bool, typer.Option(help="Drop the old entry and move its files.")] = True,
) -> None:
    """Ship a classifier's unchanged files as a new version with the calibration, operating
    points and out-of-fold figures of a complete cross-validation of its recipe."""
    from training.recalibrate import recalibrate

    entry = recalibrate(run, models_dir, name, from_version, version, invocation(), replace=replace)
    console.print(f"registered {entry.key} in {models_dir / 'manifest.json'}")
