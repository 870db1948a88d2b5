"""Synthetic images of rare findings inside ``train classify`` (``--synthetic-ratio``):
each cross-validation fold trains with images from the GAN that never saw that
fold (``<gan-dir>/fold<K>``), the final fit with a GAN trained on all images
(``<gan-dir>/all``). Held-out and early-stopping images stay real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.errors import ConfigurationError
from training.ablation import generate_rare, make_synthetic
from training.classify import Extra
from training.data import NihDataset
from training.gan.train_gan import CHECKPOINT
from training.models import ChestClassifier
from training.run_gan import rare_indices
from training.train import TrainConfig, cache_views


def fold_extra(gan_dir: Path, dataset: NihDataset, trunk_model: ChestClassifier, config: TrainConfig,
               ratio: float) -> Callable[[int, np.ndarray, np.ndarray], Extra | None]:
    """The ``extra`` hook of :func:`training.classify.cross_validate`."""
    rare = rare_indices(dataset.labels)

    def make(fold: int, train: np.ndarray, held: np.ndarray) -> Extra | None:
        synthetic = make_synthetic(gan_dir, fold, dataset.labels[train], [dataset.names[i] for i in train],
                                   [dataset.names[i] for i in held], rare, ratio, config.size, config.seed)
        if not len(synthetic.pixels):
            return None
        return Extra(cache_views(trunk_model, synthetic.pixels, config), synthetic.labels)

    return make


def final_extra(gan_dir: Path, dataset: NihDataset, trunk_model: ChestClassifier, config: TrainConfig,
                ratio: float) -> Extra | None:
    """Synthetic images for the final fit, from ``<gan-dir>/all``.

    Raises:
        ConfigurationError: no generator trained on all images.
    """
    checkpoint = gan_dir / "all" / CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigurationError(f"no GAN trained on all images at {checkpoint}; run "
                                 "'goldenhour train gan --held-out -1' first")
    synthetic = generate_rare(checkpoint, dataset.labels, rare_indices(dataset.labels), ratio, config.size,
                              config.seed + 99_000)
    if not len(synthetic.pixels):
        return None
    return Extra(cache_views(trunk_model, synthetic.pixels, config), synthetic.labels)
