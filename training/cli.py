"""``goldenhour train ...``: data checks, classifier training, export and evaluation.

Everything beyond ``data-summary`` needs the ``train`` extra (torch); imports
happen inside the commands so that ``goldenhour train --help`` works without it.
"""

from __future__ import annotations

import csv
import logging
import shlex
import sys
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
logger = logging.getLogger(__name__)

DataOption = Annotated[Path | None, typer.Option("--data", help=f"Data folder (default: ${ENV_VAR} "
                                                 "or ../shared/data).")]


def _data_root(folder: Path | None) -> Path:
    root = folder or data_dir()
    if root is None or not root.is_dir():
        console.print(f"[red]no data folder found[/]; set {ENV_VAR} to the data folder "
                      "(see README: obtaining the data)")
        raise typer.Exit(2)
    return root


def invocation() -> str:
    """The command line as typed, for the manifest."""
    return "goldenhour " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@app.command("data-summary")
def data_summary(folder: DataOption = None) -> None:
    """Count images, patients and positives per finding in the NIH sample."""
    labels = _data_root(folder) / "nih-cxr14-sample" / "labels.csv"
    if not labels.is_file():
        console.print(f"[red]no NIH sample at {labels}[/]")
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


@app.command("classify")
def classify(
    out: Annotated[Path, typer.Option(help="Run folder for logs, out-of-fold predictions and weights.")
                   ] = Path("runs/classifier"),
    folder: DataOption = None,
    labels_csv: Annotated[Path | None, typer.Option("--labels", help="A Data_Entry CSV (full NIH layout); "
                                                    "default: the sample's labels.csv.")] = None,
    images: Annotated[Path | None, typer.Option(help="Image folder for --labels.")] = None,
    folds: Annotated[int, typer.Option(min=2, help="Patient-wise stratified folds.")] = 5,
    size: Annotated[int, typer.Option(help="Input side in pixels (multiple of 32).")] = 384,
    cut: Annotated[int, typer.Option(help="Blocks kept frozen (lite0: 0..15; -1: the backbone's "
                                     "stride-32 stages train, 11 for lite0).")] = 11,
    backbone: Annotated[str, typer.Option(help="efficientnet-lite0/1/2 (offline ImageNet weights) or a "
                                          "timm name (from scratch).")] = "efficientnet-lite0",
    only_folds: Annotated[str | None, typer.Option(help="Run only these folds, e.g. 3,4 (one process per "
                                                   "core; join with 'train merge-folds').")] = None,
    cache_only: Annotated[bool, typer.Option(help="Only write the cached views to --cache-file.")] = False,
    views: Annotated[int, typer.Option(min=1, help="Cached views per image (1 plain + augmented).")] = 6,
    epochs: Annotated[int, typer.Option(min=1)] = 12,
    lr: float = 1e-3,
    distill: Annotated[float, typer.Option(help="Weight of the teacher's soft labels (0 = off).")] = 0.0,
    teacher: Annotated[bool, typer.Option(help="Load the teacher predictions file when present.")] = True,
    limit: Annotated[int | None, typer.Option(help="Use only the first N images (smoke tests).")] = None,
    final: Annotated[bool, typer.Option(help="Also fit the shipped model on all images.")] = True,
    seed: int = 0,
    cache_file: Annotated[Path | None, typer.Option(help="Reuse cached views from (or save them to) "
                                                    "this file across runs.")] = None,
    max_folds: Annotated[int | None, typer.Option(help="Run only the first N folds of the same split "
                                                  "(cheaper comparisons; no final fit).")] = None,
    final_only: Annotated[bool, typer.Option(help="Skip cross-validation and fit the final model with "
                                             "the earlier results in --out.")] = False,
    synthetic_ratio: Annotated[float, typer.Option(help="Add synthetic images of the rare findings to "
                                                   "training: this many per real positive (0 = none; "
                                                   "see docs/synthetic.md).")] = 0.0,
    gan_dir: Annotated[Path, typer.Option(help="GANs for --synthetic-ratio: fold<K> per fold, all for "
                                          "the final fit ('train gan').")] = Path("runs/gan"),
    box_loss: Annotated[float, typer.Option(help="Weight of the radiologist-box attention loss on boxed "
                                            "images (0 = image labels only; see docs/training.md).")
                        ] = 0.0,
    extra_labelled: Annotated[list[Path] | None, typer.Option(
        help="A folder from 'goldenhour hub export-labelled' to add to the data (repeatable).")] = None,
) -> None:
    """Cross-validate the classifier, calibrate it on out-of-fold predictions and
    fit the final model on all images."""
    from training.run_classify import ClassifyRequest, run_classify

    root = None if labels_csv else _data_root(folder)
    request = ClassifyRequest(out=out, data_root=root, labels_csv=labels_csv, images=images,
                              folds=folds, size=size, cut=cut, views=views, epochs=epochs, lr=lr,
                              distill=distill, teacher=teacher, limit=limit, final=final, seed=seed,
                              command=invocation(), cache_file=cache_file,
                              max_folds=max_folds, final_only=final_only,
                              synthetic_ratio=synthetic_ratio, gan_dir=gan_dir, box_loss=box_loss,
                              backbone=backbone,
                              only_folds=[int(f) for f in only_folds.split(",")] if only_folds else None,
                              cache_only=cache_only)
    request.extra_labelled = tuple(extra_labelled or ())
    run_classify(request, console)


@app.command("compare")
def compare(
    backbones: Annotated[str, typer.Option(help="Comma-separated: efficientnet-lite0 (ImageNet weights) "
                                           "and/or timm names (from scratch).")
                         ] = "efficientnet-lite0,mobilenetv3_small_100,efficientnet_b0",
    out: Annotated[Path, typer.Option(help="Folder for one run per backbone and comparison.md.")
                   ] = Path("runs/compare"),
    folder: DataOption = None,
    folds: Annotated[int, typer.Option(min=2)] = 5,
    size: int = 224,
    views: Annotated[int, typer.Option(min=1)] = 4,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    limit: Annotated[int | None, typer.Option(help="Use only the first N images (smoke tests).")] = None,
    seed: int = 0,
) -> None:
    """The backbone comparison: identical patient-wise folds, per-finding and mean
    out-of-fold AUC with 95% intervals, written as Markdown."""
    from training.compare import run_compare

    run_compare([b.strip() for b in backbones.split(",") if b.strip()], out, _data_root(folder),
                folds=folds, size=size, views=views, epochs=epochs, limit=limit, seed=seed,
                command=invocation(), console=console)


@app.command("evaluate")
def evaluate(
    run: Annotated[Path, typer.Option(help="A run folder made by 'train classify'.")
                   ] = Path("runs/classifier"),
    out: Annotated[Path | None, typer.Option(help="Where to write the report (default: the run folder).")
                   ] = None,
) -> None:
    """Per-finding AUC with 95% intervals (Markdown) and ROC curves (PNG) from a run's
    out-of-fold predictions, on the whole set and the jrzech/reproduce-chexnet subset."""
    from training.report import write_evaluation

    for path in write_evaluation(run, out or run, console):
        console.print(f"wrote {path}")


@app.command("compare-runs")
def compare_runs_command(
    run: Annotated[list[Path], typer.Option(help="Run folders (repeat); the first is the baseline.")],
    label: Annotated[list[str], typer.Option(help="A label per run, in order.")],
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("runs/comparison.md"),
) -> None:
    """Compare runs' out-of-fold AUC on the images all of them scored (e.g. with and
    without distillation), with paired bootstrap intervals of the differences."""
    from training.report import compare_runs

    if len(run) != len(label):
        raise typer.BadParameter("give one --label per --run")
    path = compare_runs(run, label, out)
    console.print(path.read_text(encoding="utf-8"))


@app.command("evaluate-localisation")
def evaluate_localisation(
    run: Annotated[Path, typer.Option(help="A run folder made by 'train classify' (with fold models).")
                   ] = Path("runs/classifier"),
    out: Annotated[Path | None, typer.Option(help="Where to write the report (default: the run folder).")
                   ] = None,
    folder: DataOption = None,
) -> None:
    """Heat-map localisation on held-out patients: the pointing-game hit rate per
    finding against the radiologist boxes, with chance levels, as Markdown and PNG."""
    from training.localisation import evaluate_heat_maps, write_localisation_report

    root = _data_root(folder)
    results = evaluate_heat_maps(run, root, console)
    for path in write_localisation_report(results, out or run, root):
        console.print(f"wrote {path}")
    hits = sum(r.hit for r in results)
    console.print(f"heat-map peak inside the right box: {hits}/{len(results)} "
                  f"({hits / max(len(results), 1):.1%})")


@app.command("detect")
def detect(
    out: Annotated[Path, typer.Option(help="Run folder (dataset, weights, reports).")
                   ] = Path("runs/detector"),
    folder: DataOption = None,
    model: Annotated[str, typer.Option(help="ultralytics architecture, from scratch: yolov8n, yolov8s...")
                     ] = "yolov8n",
    size: Annotated[int, typer.Option(help="Input side (multiple of 32).")] = 512,
    epochs: Annotated[int, typer.Option(min=1)] = 60,
    batch: int = 16,
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without validation gain.")] = 15,
    seed: int = 0,
    name: str = "chest-yolo",
    version: str = "1.0.0",
    register: Annotated[bool, typer.Option(help="Export to models/ and add the manifest entry.")] = False,
    models_dir: Annotated[Path | None, typer.Option(help="Default: the repository's models/.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Skip training: evaluate (and --register) these "
                                                 "weights of an earlier run in --out.")] = None,
    formats: Annotated[str, typer.Option(help="Files to ship: onnx,openvino or openvino only (smaller; "
                                         "the edge runs the detector on OpenVINO).")] = "onnx,openvino",
) -> None:
    """Train the box detector on the radiologist boxes (patient-wise split shared
    with the classifier's folds), evaluate it on held-out patients, and with
    --register export it (ONNX and OpenVINO IR, no NMS) into the manifest."""
    from shared.manifest import DEFAULT_MODELS_DIR
    from training.run_detect import run_detect

    run_detect(_data_root(folder), out, models_dir or DEFAULT_MODELS_DIR, model=model, size=size,
               epochs=epochs, batch=batch, patience=patience, seed=seed, name=name, version=version,
               register=register, command=invocation(), console=console, weights=weights,
               formats=tuple(f.strip() for f in formats.split(",") if f.strip()))


@app.command("export")
def export(
    run: Annotated[Path, typer.Option(help="A run folder made by 'train classify'.")
                   ] = Path("runs/classifier"),
    name: str = "chest-effnetlite0",
    version: str = "1.0.0",
    models_dir: Annotated[Path | None, typer.Option(help="Default: the repository's models/.")] = None,
    int8: Annotated[bool, typer.Option(help="Also write an NNCF INT8 OpenVINO model.")] = True,
    folder: DataOption = None,
) -> None:
    """Export the run's final model to ONNX and OpenVINO IR (FP32, INT8), check
    parity with torch, and write the manifest entry and model card."""
    from shared.manifest import DEFAULT_MODELS_DIR
    from training.export import export_run

    export_run(run, name, version, models_dir or DEFAULT_MODELS_DIR, int8=int8,
               data_root=_data_root(folder), console=console, command=invocation())


@app.command("gan")
def gan(
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/gan/fold<K> or runs/gan/all).")
                   ] = None,
    held_out: Annotated[int, typer.Option("--held-out", help="Fold the GAN must never see (-1: train on "
                                          "all images, for the generator that ships).")] = 0,
    folds: Annotated[int, typer.Option(min=2, help="Patient-wise folds, as in 'train classify'.")] = 5,
    size: Annotated[int, typer.Option(help="Final resolution: 128 on a CPU, 256-512 on a GPU.")] = 128,
    images_per_phase: Annotated[int, typer.Option(help="Real images shown per fade-in and per stable "
                                                  "phase of each resolution.")] = 1200,
    final_images: Annotated[int, typer.Option(help="Extra images at the final resolution.")] = 2400,
    seed: int = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's checkpoint.")] = True,
    folder: DataOption = None,
) -> None:
    """Train the class-conditional progressive GAN on the training folds only,
    with checkpoints (resumable), a progress bar and a sample grid per epoch."""
    from training.run_gan import run_gan

    target = out or Path("runs/gan") / ("all" if held_out < 0 else f"fold{held_out}")
    state = run_gan(_data_root(folder), target, held_out=held_out, folds=folds, size=size,
                    images_per_phase=images_per_phase, final_images=final_images, seed=seed,
                    resume=resume, command=invocation(), console=console)
    console.print(f"GAN trained on {len(state.names)} images, {state.seen} shown; checkpoint in {target}")


@app.command("synthesize")
def synthesize_command(
    finding: Annotated[str, typer.Option(help="NIH finding name, e.g. Hernia.")],
    count: Annotated[int, typer.Option(min=1, help="Images to write.")] = 100,
    checkpoint: Annotated[Path, typer.Option(help="A GAN checkpoint from 'train gan'.")
                          ] = Path("runs/gan/fold0/checkpoint.pt"),
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and synthetic.json.")
                   ] = Path("runs/synthetic"),
    seed: int = 0,
    folder: DataOption = None,
) -> None:
    """Write labelled synthetic images of one finding. Every file is marked
    synthetic (name, PNG text chunk, manifest): it can train a model but never
    enter an evaluation set, and the edge refuses to diagnose it as a case."""
    from shared.errors import ConfigurationError
    from training.synthesize import synthesize

    root = folder or data_dir()
    try:
        path = synthesize(checkpoint, finding, count, out, data_root=root if root and root.is_dir() else None,
                          seed=seed, command=invocation())
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"wrote {count} synthetic {finding} images; manifest {path}")


@app.command("gan-quality")
def gan_quality(
    gan_dir: Annotated[Path, typer.Option(help="Folder of fold<K> GAN runs.")] = Path("runs/gan"),
    out: Annotated[Path, typer.Option(help="Where quality.md and the sample grids go.")
                   ] = Path("docs/synthetic"),
    folds: Annotated[int, typer.Option(min=2)] = 5,
    folder: DataOption = None,
) -> None:
    """FID and KID of each fold's GAN against its held-out real images (offline
    EfficientNet-Lite0 features), a real-vs-real floor, and sample grids."""
    from training.run_quality import run_quality

    path = run_quality(_data_root(folder), gan_dir, out, folds=folds, command=invocation(), console=console)
    console.print(path.read_text(encoding="utf-8"))


@app.command("ablation")
def ablation(
    gan_dir: Annotated[Path, typer.Option(help="Folder of fold<K> GAN runs.")] = Path("runs/gan"),
    out: Annotated[Path, typer.Option(help="Run folder (oof.npz, results.json, ablation.md).")
                   ] = Path("runs/ablation"),
    docs: Annotated[Path | None, typer.Option(help="Also copy ablation.md here.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    ratios: Annotated[str, typer.Option(help="Synthetic images per real positive of each rare finding "
                                        "(comma-separated; empty: no synthetic arms).")] = "0.5,2",
    size: int = 128,
    views: Annotated[int, typer.Option(min=1)] = 2,
    epochs: Annotated[int, typer.Option(min=1)] = 4,
    folds: Annotated[int, typer.Option(min=2)] = 5,
    limit: Annotated[int | None, typer.Option(help="Use only the first N images (smoke tests).")] = None,
    folder: DataOption = None,
) -> None:
    """Baseline, class-weighted loss, oversampling and synthetic images at several
    ratios, on the pipeline's patient-wise folds with several seeds: per-finding
    and mean out-of-fold AUC with paired bootstrap intervals (real images only)."""
    import shutil

    from training.ablation import AblationConfig, default_arms, run_ablation

    ratio_values = tuple(float(r) for r in ratios.split(",") if r.strip())
    config = AblationConfig(size=size, views=views, epochs=epochs, folds=folds, limit=limit,
                            seeds=tuple(int(s) for s in seeds.split(",") if s.strip()),
                            arms=default_arms(ratio_values))
    path = run_ablation(_data_root(folder), gan_dir, out, config, command=invocation(), console=console)
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, docs / path.name)
    console.print(path.read_text(encoding="utf-8"))


# Commands that evaluate a run's out-of-fold results, and those that make the
# other model artifacts, live in their own modules; importing them registers them on ``app``.
from training import cli_artifacts, cli_evaluation  # noqa: E402, F401
