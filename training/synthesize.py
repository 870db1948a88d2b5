"""``train synthesize``: labelled synthetic images of one finding from a trained
GAN checkpoint, written marked (see :mod:`training.synthetic`)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from training.data import SAMPLE_SUBDIR, parse_labels
from training.gan.networks import Generator
from training.gan.train_gan import GanConfig, load_generator, sample
from training.synthetic import write_set


def finding_index(finding: str) -> int:
    names = [str(f) for f in FINDINGS]
    if finding not in names:
        raise ConfigurationError(f"unknown finding {finding!r}; one of {', '.join(names)}")
    return names.index(finding)


def condition_vectors(finding: str, pool: np.ndarray | None, count: int, seed: int) -> np.ndarray:
    """``count`` label vectors that all hold ``finding``: drawn from ``pool`` (the
    GAN's training labels) rows with it, so that co-occurring findings appear as
    often as in real images; the finding alone when the pool has none."""
    k = finding_index(finding)
    rows = pool[pool[:, k] == 1] if pool is not None else np.zeros((0, len(FINDINGS)), dtype=np.uint8)
    if not len(rows):
        vector = np.zeros(len(FINDINGS), dtype=np.uint8)
        vector[k] = 1
        return np.repeat(vector[None], count, axis=0)
    rng = np.random.default_rng(seed)
    return rows[rng.integers(0, len(rows), count)].astype(np.uint8)


def training_labels(data_root: Path | None, names: list[str]) -> np.ndarray | None:
    """The label vectors of the GAN's training images (from the sample's labels.csv)."""
    if data_root is None:
        return None
    path = data_root / SAMPLE_SUBDIR / "labels.csv"
    if not path.is_file():
        return None
    wanted = set(names)
    with path.open(encoding="utf-8") as handle:
        rows = [parse_labels(r["Finding Labels"]) for r in csv.DictReader(handle)
                if r["Image Index"] in wanted]
    return np.stack(rows) if rows else None


def generate(generator: Generator, labels: np.ndarray, seed: int, batch: int = 64) -> np.ndarray:
    """Images (n, r, r) uint8 for ``labels`` (n, 14) from a (checkpoint's averaged) generator."""
    chunks = [sample(generator, torch.as_tensor(labels[i:i + batch]), seed=seed + i)
              for i in range(0, len(labels), batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, generator.arch.resolution,) * 2, np.uint8)


def generator_info(checkpoint: Path, config: GanConfig, names: list[str]) -> dict[str, object]:
    return {"name": "goldenhour-pggan", "checkpoint": str(checkpoint),
            "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "resolution": config.arch.resolution, "trained_on_images": len(names)}


def synthesize(checkpoint: Path, finding: str, count: int, out: Path, *, data_root: Path | None,
               seed: int, command: str) -> Path:
    """Write ``count`` synthetic images of ``finding`` into ``out``; returns the manifest."""
    if not checkpoint.is_file():
        raise ConfigurationError(f"no GAN checkpoint at {checkpoint}; run 'goldenhour train gan' first")
    generator, config, names = load_generator(checkpoint)
    labels = condition_vectors(finding, training_labels(data_root, names), count, seed)
    images = generate(generator, labels, seed)
    return write_set(out, images, labels, generator=generator_info(checkpoint, config, names),
                     stem=finding.lower().replace("_", "-"), seed=seed, command=command)
