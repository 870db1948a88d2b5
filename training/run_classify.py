"""The ``train classify`` job: data -> cached views -> cross-validation ->
calibration -> final fit, everything written to the run folder."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from training.calibrate import fit_calibration
from training.classify import JRZECH, cross_validate, fit_final, save_run
from training.data import NihDataset, load_nih, load_pixels, load_sample
from training.extra_labelled import append_exports
from training.metrics import expected_calibration_error, mean_auc
from training.models import build
from training.train import TrainConfig, cache_views, init_distributed, seed_everything

logger = logging.getLogger(__name__)


@dataclass
class ClassifyRequest:
    """The options of ``goldenhour train classify``."""

    out: Path
    data_root: Path | None
    labels_csv: Path | None
    images: Path | None
    folds: int
    size: int
    cut: int
    views: int
    epochs: int
    lr: float
    distill: float
    teacher: bool
    limit: int | None
    final: bool
    seed: int
    command: str
    backbone: str = "efficientnet-lite0"
    max_folds: int | None = None
    final_only: bool = False
    """Skip cross-validation: fit the final model with the run folder's earlier
    out-of-fold results (calibration, epochs), e.g. after a ``--max-folds`` run."""
    cache_file: Path | None = None
    """Reuse (or write) the cached views here; valid for the same data, size, cut, views and seed."""
    synthetic_ratio: float = 0.0
    """Synthetic images per real positive of each rare finding (0 = none; see docs/synthetic.md)."""
    gan_dir: Path = Path("runs/gan")
    """GANs per fold (``fold<K>``) and on all images (``all``) for ``synthetic_ratio``."""
    box_loss: float = 0.0
    """Weight of the radiologist-box attention loss (0 = image labels only)."""
    cache_only: bool = False
    """Only compute (and save to ``cache_file``) the cached views."""
    only_folds: list[int] | None = None
    """Run only these folds of the split (several processes, then ``train merge-folds``)."""
    extra_labelled: tuple[Path, ...] = ()
    """Folders exported by ``goldenhour hub export-labelled``, appended to the data."""


def load_dataset(request: ClassifyRequest) -> NihDataset:
    """The sample (default) or a full NIH layout."""
    if request.labels_csv is not None:
        if request.images is None:
            raise ConfigurationError("--images is needed with --labels")
        dataset = load_nih(request.labels_csv, request.images)
    else:
        assert request.data_root is not None
        dataset = load_sample(request.data_root, with_teacher=request.teacher)
    if request.limit:
        dataset = dataset.subset(np.arange(min(request.limit, len(dataset))))
    return append_exports(dataset, request.extra_labelled)  # ER-labelled images from the hub




def run_classify(request: ClassifyRequest, console: Console) -> dict[str, object]:
    """Run the whole job; returns the summary also written to ``run.json``."""
    distributed = init_distributed()
    rank = torch.distributed.get_rank() if distributed else 0
    request.out.mkdir(parents=True, exist_ok=True)
    if not request.final_only:
        (request.out / "epochs.jsonl").unlink(missing_ok=True)
    config = TrainConfig(backbone=request.backbone, size=request.size, cut=request.cut,
                         views=request.views, epochs=request.epochs, lr=request.lr,
                         distill=request.distill, seed=request.seed, box_loss=request.box_loss)
    seed_everything(config.seed)

    def report(line: str) -> None:
        if rank == 0:
            console.print(line)

    started = time.perf_counter()
    dataset = load_dataset(request)
    report(f"{len(dataset)} images of {len(np.unique(dataset.patients))} patients; teacher for "
           f"{0 if dataset.teacher is None else int((~np.isnan(dataset.teacher[:, 0])).sum())}")
    pixels = load_pixels(dataset, config.size)
    model, info = build(config.backbone, config.cut)
    config.cut = info.cut  # a negative cut means the backbone's own default; record the real one
    key = {"images": dataset.names, "size": config.size, "cut": config.cut, "views": config.views,
           "seed": config.seed, "backbone": config.backbone}
    cache = _load_cache(request.cache_file, key)
    if cache is None:
        with Progress(console=console, disable=rank != 0) as progress:
            task = progress.add_task(f"caching {config.views} views at {config.size} px", total=1)
            cache = cache_views(model, pixels, config, progress=lambda done, total: progress.update(
                task, completed=done, total=total))
        if request.cache_file is not None and rank == 0:
            torch.save({"key": key, "cache": cache}, request.cache_file)
    cache_s = time.perf_counter() - started
    report(f"cache {tuple(cache.shape)} in {cache_s:.0f} s")
    if request.cache_only:
        report(f"cached views written to {request.cache_file}")
        return {"cache_seconds": cache_s}
    masks = _box_masks(dataset, model, cache) if config.box_loss > 0 else None
    if masks is not None:
        report(f"box supervision (weight {config.box_loss:g}): "
               f"{int(masks.flatten(2).any(-1).any(-1).sum())} boxed images")
    if request.final_only:
        return _final_only(request, dataset, cache, model, config, info, report, started, masks)
    extra = None
    if request.synthetic_ratio > 0:
        from training.synthetic_recipe import fold_extra

        extra = fold_extra(request.gan_dir, dataset, model, config, request.synthetic_ratio)
    cv = cross_validate(dataset, cache, model, config, request.folds, request.out, report,
                        max_folds=request.max_folds, extra=extra, box_masks=masks,
                        only_folds=request.only_folds)
    scored = ~np.isnan(cv.logits[:, 0])
    if not scored.all():
        report(f"only {int(scored.sum())} images scored (--max-folds {request.max_folds}); "
               "figures below are on those")
        dataset = dataset.subset(np.flatnonzero(scored))
        cv.logits = cv.logits[scored]
        cv.tta_logits = cv.tta_logits[scored] if cv.tta_logits is not None else None
    calibration = fit_calibration(cv.logits, dataset.labels)
    jr = np.array([s == JRZECH for s in dataset.sources])
    raw_p = 1 / (1 + np.exp(-cv.logits))
    summary: dict[str, object] = {
        "images": len(dataset), "patients": int(len(np.unique(dataset.patients))),
        "backbone": asdict(info), "folds": request.folds,
        "oof_mean_auc": mean_auc(dataset.labels, cv.logits),
        "oof_mean_auc_jrzech": mean_auc(dataset.labels[jr], cv.logits[jr]) if jr.sum() > 10 else None,
        "jrzech_images": int(jr.sum()),
        "oof_mean_auc_tta": mean_auc(dataset.labels, cv.tta_logits) if cv.tta_logits is not None else None,
        "oof_mean_auc_jrzech_tta": mean_auc(dataset.labels[jr], cv.tta_logits[jr])
        if cv.tta_logits is not None and jr.sum() > 10 else None,
        "best_epochs": cv.best_epochs,
        "ece_before": expected_calibration_error(dataset.labels, raw_p),
        "ece_after": expected_calibration_error(dataset.labels, calibration.apply(cv.logits)),
        "calibration": asdict(calibration), "labels": [str(f) for f in FINDINGS],
        "cache_seconds": cache_s, "cv_seconds": cv.seconds, "command": request.command,
        # Named relative to the data folder: a manifest never carries a machine's own paths.
        "data": str(request.labels_csv or "<data folder>/nih-cxr14-sample")
        + (f" + synthetic images of rare findings for training only ({request.synthetic_ratio:g} per real "
           f"positive, generators in {request.gan_dir})" if request.synthetic_ratio > 0 else ""),
        "synthetic_ratio": request.synthetic_ratio,
    }
    report(f"out-of-fold mean AUC {summary['oof_mean_auc']:.4f} on all {len(dataset)} images; "
           f"{summary['oof_mean_auc_jrzech']} on {int(jr.sum())} {JRZECH} images; "
           f"ECE {summary['ece_before']:.3f} -> {summary['ece_after']:.3f} after calibration")
    if request.final and rank == 0 and scored.all():
        epochs = max(1, int(np.median(cv.best_epochs)))
        final_started = time.perf_counter()
        final_synthetic = None
        if request.synthetic_ratio > 0:
            from training.synthetic_recipe import final_extra

            final_synthetic = final_extra(request.gan_dir, dataset, model, config, request.synthetic_ratio)
        final = fit_final(dataset, cache, model, config, epochs, request.out, report, final_synthetic,
                          box_masks=masks)
        torch.save({"state_dict": final.state_dict(), "config": config.to_dict(),
                    "backbone": asdict(info)}, request.out / "model.pt")
        summary["final_epochs"] = epochs
        summary["final_seconds"] = time.perf_counter() - final_started
    summary["total_seconds"] = time.perf_counter() - started
    if rank == 0:
        save_run(request.out, config, summary)
        report(f"run written to {request.out} in {summary['total_seconds']:.0f} s: "
               + json.dumps({k: summary[k] for k in ("oof_mean_auc", "oof_mean_auc_jrzech")}))
    if distributed:
        torch.distributed.destroy_process_group()
    return summary


def _box_masks(dataset: NihDataset, model: torch.nn.Module, cache: torch.Tensor) -> torch.Tensor:
    """The sample's radiologist boxes on the class activation map's grid."""
    from training.box_supervision import sample_box_masks

    with torch.no_grad():
        grid = model.forward_top(cache[0, :1].float())[1].shape[-1]  # type: ignore[operator]
    return sample_box_masks(dataset.image_dir, dataset.names, grid)


def _load_cache(path: Path | None, key: dict[str, object]) -> torch.Tensor | None:
    if path is None or not path.is_file():
        return None
    saved = torch.load(path, weights_only=True)
    if saved.get("key") != key:
        logger.warning("cache file is for other data or settings; recomputing", extra={"path": str(path)})
        return None
    return saved["cache"]


def _final_only(request: ClassifyRequest, dataset: NihDataset, cache: torch.Tensor, model: torch.nn.Module,
                config: TrainConfig, info: object, report: Callable[[str], None],
                started: float, masks: torch.Tensor | None = None) -> dict[str, object]:
    """Fit the final model for a run whose cross-validation is already in ``--out``."""
    path = request.out / "run.json"
    if not path.is_file():
        raise ConfigurationError(f"{path} not found: --final-only needs an earlier run in --out")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if summary["config"]["distill"] != config.distill or summary["config"]["size"] != config.size:
        raise ConfigurationError("--final-only must use the earlier run's settings")
    epochs = max(1, int(np.median(summary["best_epochs"])))
    final_started = time.perf_counter()
    final = fit_final(dataset, cache, model, config, epochs, request.out, report,  # type: ignore[arg-type]
                      box_masks=masks)
    torch.save({"state_dict": final.state_dict(), "config": config.to_dict(), "backbone": asdict(info)},  # type: ignore[call-overload]
               request.out / "model.pt")
    summary.update(final_epochs=epochs, final_seconds=time.perf_counter() - final_started,
                   images_final=len(dataset), patients_final=int(len(np.unique(dataset.patients))),
                   command=f"{summary['command']} && {request.command}")
    save_run(request.out, config, {k: v for k, v in summary.items() if k != "config"})
    report(f"final model written to {request.out / 'model.pt'} ({epochs} epochs on {len(dataset)} images)")
    return summary
