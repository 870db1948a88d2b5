"""The ``train gan`` job: the sample's images at the GAN's resolution, the
patient-wise folds of the classifier pipeline, and one GAN trained on every
fold but the held-out one (or on all images, for the generator that ships)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from rich.console import Console

from shared.findings import FINDINGS
from training.data import NihDataset, load_pixels, load_sample
from training.folds import patient_folds
from training.gan.networks import GanArchitecture
from training.gan.train_gan import GanConfig, GanState, train_gan, training_indices

logger = logging.getLogger(__name__)

RARE = ("Hernia", "Edema", "Emphysema", "Fibrosis", "Pneumonia", "Consolidation")
"""Findings with the fewest positives in the sample (25-70 of 1,335 images)."""


def rare_findings(labels: np.ndarray, limit: int = 100) -> list[str]:
    """Findings with fewer than ``limit`` positive images, rarest first."""
    counts = labels.sum(0)
    order = np.argsort(counts)
    return [str(FINDINGS[i]) for i in order if counts[i] < limit]


def rare_indices(labels: np.ndarray, limit: int = 100) -> list[int]:
    """:func:`rare_findings` as column indices in canonical finding order."""
    names = [str(f) for f in FINDINGS]
    return [names.index(n) for n in rare_findings(labels, limit)]


def gan_dataset(data_root: Path, size: int, held_out: int, folds: int, fold_seed: int
                ) -> tuple[NihDataset, np.ndarray, np.ndarray]:
    """(training part of the dataset, its pixels, the fold of every image of the full set)."""
    dataset = load_sample(data_root, with_teacher=False)
    fold_of = patient_folds(dataset.patients, dataset.labels, folds, fold_seed)
    index = training_indices(fold_of, held_out) if held_out >= 0 else np.arange(len(dataset))
    part = dataset.subset(index)
    return part, load_pixels(part, size), fold_of


def run_gan(data_root: Path, out: Path, *, held_out: int, folds: int = 5, fold_seed: int = 0,
            size: int = 128, images_per_phase: int = 1200, final_images: int = 2400, seed: int = 0,
            resume: bool = True, command: str = "", console: Console | None = None) -> GanState:
    """Train one GAN; writes ``run.json`` (command, data, images used) beside the checkpoint."""
    part, pixels, _ = gan_dataset(data_root, size, held_out, folds, fold_seed)
    config = GanConfig(arch=GanArchitecture(resolution=size), images_per_phase=images_per_phase,
                       final_images=final_images, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({
        "command": command, "data": "NIH ChestX-ray14 sample (nih-cxr14-sample)",
        "held_out_fold": held_out, "folds": folds, "fold_seed": fold_seed, "images": len(part),
        "patients": int(len(np.unique(part.patients))), "config": config.to_dict()}, indent=2) + "\n")
    grid = rare_findings(part.labels)[:6] or [str(FINDINGS[0])]
    return train_gan(pixels, part.labels, part.names, out, config, grid_findings=grid,
                     console=console, resume=resume)
