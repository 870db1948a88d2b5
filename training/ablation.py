"""``train ablation``: does anything relieve class imbalance here, synthetic
images included? Every arm trains on the same patient-wise folds (the
classifier pipeline's split) with several seeds and is scored out of fold on
real images only.

Arms: plain BCE (baseline); BCE with capped positive weights (class-weighted,
the default recipe); plain BCE with rare-finding images repeated
(oversampling); the default recipe plus synthetic images of the rare findings
at several ratios. The synthetic images for fold k come from the GAN trained
without fold k (``runs/gan/fold<k>``), checked by image name before use.

The protocol is the cheap one of ``train compare`` (128 px, cached views, a
few epochs): the GAN makes 128 px images on a CPU, and 6 arms x 3 seeds x 5
folds of the 384 px recipe would take about 15 hours on two cores.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from training.classify import fresh_model
from training.data import load_pixels, load_sample
from training.folds import patient_folds
from training.gan.train_gan import CHECKPOINT, assert_disjoint, load_generator
from training.models import build
from training.run_gan import rare_indices
from training.synthesize import condition_vectors, generate
from training.synthetic import assert_real
from training.train import TrainConfig, cache_views, fit, predict_cached


@dataclass(frozen=True)
class Arm:
    """One way to train: loss weighting, oversampling and synthetic share."""

    name: str
    pos_weight_cap: float
    """1 = plain BCE for every finding rarer than 50%; 10 = the default recipe."""
    oversample: bool = False
    synthetic_ratio: float = 0.0
    """Synthetic images per real positive of each rare finding."""


def default_arms(ratios: tuple[float, ...] = (0.5, 2.0)) -> list[Arm]:
    return [Arm("baseline", 1.0), Arm("class-weighted", 10.0), Arm("oversampling", 1.0, oversample=True),
            *[Arm(f"synthetic x{r:g}", 10.0, synthetic_ratio=r) for r in ratios]]


REFERENCE = "class-weighted"
"""The default recipe: every other arm is compared with it."""


@dataclass
class AblationConfig:
    """The protocol (recorded with the results)."""

    size: int = 128
    views: int = 2
    epochs: int = 4
    folds: int = 5
    fold_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    rare_limit: int = 100
    arms: list[Arm] = field(default_factory=default_arms)
    limit: int | None = None
    """Use only the first N images (smoke tests)."""


def repeat_rare(index: np.ndarray, labels: np.ndarray, rare: list[int]) -> np.ndarray:
    """Oversampling: each image with a rare finding appears ``median positives /
    positives of its rarest finding`` times (at most 8), counted on ``index``."""
    counts = labels[index].sum(0).astype(float)
    median = float(np.median(counts[counts > 0])) if (counts > 0).any() else 1.0
    factor = np.ones(len(index), dtype=int)
    for k in rare:
        if counts[k] > 0:
            times = int(np.clip(round(median / counts[k]), 1, 8))
            factor = np.where(labels[index, k] == 1, np.maximum(factor, times), factor)
    return np.repeat(index, factor)


@dataclass
class FoldSynthetic:
    """Synthetic images made for one fold, ordered so that a ratio is a prefix per finding."""

    pixels: np.ndarray
    labels: np.ndarray
    finding: np.ndarray
    """Which rare finding each image was made for."""
    rank: np.ndarray
    """Position within its finding's list (take rank < n for n images)."""

    def take(self, ratio: float, positives: dict[int, int]) -> np.ndarray:
        keep = np.zeros(len(self.pixels), dtype=bool)
        for k, count in positives.items():
            keep |= (self.finding == k) & (self.rank < round(ratio * count))
        return np.flatnonzero(keep)


def make_synthetic(gan_dir: Path, fold: int, train_labels: np.ndarray, train_names: list[str],
                   held_names: list[str], rare: list[int], ratio: float, size: int,
                   seed: int) -> FoldSynthetic:
    """Generate ``ratio`` x positives images per rare finding with fold ``fold``'s GAN."""
    checkpoint = gan_dir / f"fold{fold}" / CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigurationError(f"no GAN for fold {fold} at {checkpoint}; run "
                                 f"'goldenhour train gan --held-out {fold}' first")
    _, _, trained_on = load_generator(checkpoint)
    assert_disjoint(trained_on, held_names)
    if not set(trained_on) <= set(train_names):
        raise ConfigurationError(f"{checkpoint} was trained on images outside fold {fold}'s training part")
    return generate_rare(checkpoint, train_labels, rare, ratio, size, seed + 1000 * fold)


def generate_rare(checkpoint: Path, train_labels: np.ndarray, rare: list[int], ratio: float, size: int,
                  seed: int) -> FoldSynthetic:
    """``ratio`` x positives (in ``train_labels``) synthetic images per rare finding, at ``size`` px."""
    generator, _, _ = load_generator(checkpoint)
    pixels, labels, finding, rank = [], [], [], []
    for k in rare:
        count = round(ratio * int(train_labels[:, k].sum()))
        if not count:
            continue
        vectors = condition_vectors(str(FINDINGS[k]), train_labels, count, seed + k)
        images = generate(generator, vectors, seed + k)
        if images.shape[-1] != size:
            images = np.stack([np.asarray(Image.fromarray(i).resize((size, size), Image.Resampling.BILINEAR))
                               for i in images])
        pixels.append(images)
        labels.append(vectors)
        finding.append(np.full(count, k))
        rank.append(np.arange(count))
    if not pixels:
        empty = np.zeros(0, dtype=int)
        return FoldSynthetic(np.zeros((0, size, size), np.uint8), np.zeros((0, len(FINDINGS)), np.uint8),
                             empty, empty)
    return FoldSynthetic(np.concatenate(pixels), np.concatenate(labels), np.concatenate(finding),
                         np.concatenate(rank))


def _protocol(config: AblationConfig) -> dict[str, object]:
    """What must match for an earlier run's results to be reused (not the list of arms)."""
    return {k: v for k, v in asdict(config).items() if k != "arms"}


def _resume(out: Path, config: AblationConfig, oof: dict[str, np.ndarray]) -> set[str]:
    """Load finished (arm, seed) results of an earlier run with the same protocol."""
    progress, saved = out / "progress.json", out / "oof.npz"
    if not (progress.is_file() and saved.is_file()):
        return set()
    state = json.loads(progress.read_text())
    if state.get("protocol") != json.loads(json.dumps(_protocol(config))):
        return set()
    done: set[str] = set()
    with np.load(saved) as arrays:
        for key in state["done"]:
            name, seed = key.rsplit("|", 1)
            if name in oof and int(seed) in config.seeds and name in state["arrays"]:
                s = config.seeds.index(int(seed))
                oof[name][s] = arrays[state["arrays"][name]][state["seeds"].index(int(seed))]
                done.add(key)
    return done


def _checkpoint(out: Path, config: AblationConfig, oof: dict[str, np.ndarray], done: set[str]) -> None:
    arrays = {name: f"arm{i}" for i, name in enumerate(oof)}
    np.savez_compressed(out / "oof.npz", **{arrays[name]: value for name, value in oof.items()})
    (out / "progress.json").write_text(json.dumps({
        "protocol": _protocol(config), "seeds": list(config.seeds), "arrays": arrays,
        "done": sorted(done)}, indent=1) + "\n", encoding="utf-8")


def run_ablation(data_root: Path, gan_dir: Path, out: Path, config: AblationConfig, *, command: str,
                 console: Console | None = None) -> Path:
    """Train every arm on every fold and seed; writes ``oof.npz``, ``results.json``
    and ``ablation.md`` into ``out``; returns the Markdown path."""
    from training.ablation_report import write_report

    console = console or Console(quiet=True)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_sample(data_root, with_teacher=False)
    if config.limit:
        dataset = dataset.subset(np.arange(min(config.limit, len(dataset))))
    fold_of = patient_folds(dataset.patients, dataset.labels, config.folds, config.fold_seed)
    rare = rare_indices(dataset.labels, config.rare_limit)
    console.print(f"{len(dataset)} images, rare findings: {[str(FINDINGS[k]) for k in rare]}")
    train_config = TrainConfig(size=config.size, views=config.views, epochs=config.epochs, seed=0)
    trunk_model, _ = build(train_config.backbone, train_config.cut)
    real_cache = cache_views(trunk_model, load_pixels(dataset, config.size), train_config)
    max_ratio = max((a.synthetic_ratio for a in config.arms), default=0.0)
    synthetic: dict[int, FoldSynthetic] = {}
    synthetic_cache: dict[int, torch.Tensor] = {}
    if max_ratio > 0:
        for fold in range(config.folds):
            train, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
            synthetic[fold] = make_synthetic(
                gan_dir, fold, dataset.labels[train], [dataset.names[i] for i in train],
                [dataset.names[i] for i in held], rare, max_ratio, config.size, seed=0)
            synthetic_cache[fold] = cache_views(trunk_model, synthetic[fold].pixels, train_config)
            console.print(f"fold {fold}: {len(synthetic[fold].pixels)} synthetic images for training")
    n = len(dataset)
    oof = {arm.name: np.full((len(config.seeds), n, len(FINDINGS)), np.nan, dtype=np.float32)
           for arm in config.arms}
    done = _resume(out, config, oof)
    reused = len(done)
    for s, seed in enumerate(config.seeds):
        for arm in config.arms:
            if f"{arm.name}|{seed}" in done:
                console.print(f"seed {seed} {arm.name}: done in an earlier run, reused")
                continue
            for fold in range(config.folds):
                train, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
                inner = patient_folds(dataset.patients[train], dataset.labels[train], 8, seed + fold)
                fit_idx, stop_idx = train[inner != 0], train[inner == 0]
                cache, labels, is_synthetic = real_cache, dataset.labels, np.zeros(n, dtype=bool)
                if arm.oversample:
                    fit_idx = repeat_rare(fit_idx, dataset.labels, rare)
                if arm.synthetic_ratio > 0:
                    positives = {k: int(dataset.labels[fit_idx, k].sum()) for k in rare}
                    extra = synthetic[fold].take(arm.synthetic_ratio, positives)
                    cache = torch.cat([real_cache, synthetic_cache[fold][:, torch.as_tensor(extra)]], dim=1)
                    labels = np.concatenate([dataset.labels, synthetic[fold].labels[extra]])
                    is_synthetic = np.concatenate([is_synthetic, np.ones(len(extra), dtype=bool)])
                    fit_idx = np.concatenate([fit_idx, n + np.arange(len(extra))])
                assert_real([dataset.names[i] for i in held], is_synthetic[held])
                assert_real([dataset.names[i] for i in stop_idx], is_synthetic[stop_idx])
                torch.manual_seed(seed * 100 + fold)
                model = fresh_model(train_config, trunk_model)
                run = TrainConfig(**{**train_config.to_dict(), "augment": train_config.augment,
                                     "seed": seed, "pos_weight_cap": arm.pos_weight_cap})
                fit(model, cache, labels, None, fit_idx, stop_idx, run)
                oof[arm.name][s, held] = predict_cached(model, cache[0, torch.as_tensor(held)])
            console.print(f"seed {seed} {arm.name}: done ({time.perf_counter() - started:.0f} s)")
            done.add(f"{arm.name}|{seed}")
            _checkpoint(out, config, oof, done)
    meta = {"command": command,
            "data": "NIH ChestX-ray14 sample (nih-cxr14-sample), out-of-fold, real images only",
            "images": n, "patients": int(len(np.unique(dataset.patients))),
            "rare": [str(FINDINGS[k]) for k in rare], "seconds": time.perf_counter() - started,
            "reused": reused, "trained": len(config.seeds) * len(config.arms) - reused,
            "config": {**asdict(config), "arms": [asdict(a) for a in config.arms]},
            "synthetic_per_fold": {f: len(s.pixels) for f, s in synthetic.items()}}
    return write_report(out, dataset, oof, config.arms, rare, meta)
