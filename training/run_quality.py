"""The ``train gan-quality`` job: FID and KID of each fold's GAN against that
fold's held-out real images (which the GAN never saw), a real-vs-real floor,
and a sample grid per rare finding for people to look at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from training.data import load_pixels, load_sample
from training.folds import patient_folds
from training.gan.train_gan import CHECKPOINT, assert_disjoint, grid_labels, load_generator, sample, save_grid
from training.gan_quality import Lite0Features, distance
from training.run_gan import rare_findings
from training.synthesize import generate


def run_quality(data_root: Path, gan_dir: Path, out: Path, *, folds: int = 5, fold_seed: int = 0,
                command: str, console: Console) -> Path:
    """Write ``quality.json``, ``quality.md`` and ``grid-<finding>.png`` files into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_sample(data_root, with_teacher=False)
    fold_of = patient_folds(dataset.patients, dataset.labels, folds, fold_seed)
    features = Lite0Features()
    rows, grid_written = [], []
    rng = np.random.default_rng(0)
    for fold in range(folds):
        checkpoint = gan_dir / f"fold{fold}" / CHECKPOINT
        if not checkpoint.is_file():
            console.print(f"fold {fold}: no GAN at {checkpoint}, skipped")
            continue
        generator, config, trained_on = load_generator(checkpoint)
        size = config.arch.resolution
        held, train = np.flatnonzero(fold_of == fold), np.flatnonzero(fold_of != fold)
        assert_disjoint(trained_on, [dataset.names[i] for i in held])
        real = load_pixels(dataset.subset(held), size)
        other = load_pixels(dataset.subset(rng.choice(train, len(held), replace=False)), size)
        fake = generate(generator, dataset.labels[held], seed=fold)
        synthetic = distance(real, fake, features)
        floor = distance(real, other, features)
        rows.append({"fold": fold, "held_out_images": len(held), "resolution": size,
                     "synthetic": synthetic.to_dict(), "real_floor": floor.to_dict()})
        console.print(f"fold {fold}: FID {synthetic.fid:.1f} (real floor {floor.fid:.1f}), "
                      f"KID {synthetic.kid:.4f} (floor {floor.kid:.4f})")
        if not grid_written:
            for finding in rare_findings(dataset.labels):
                images = sample(generator, grid_labels([finding], 8), seed=1)
                path = out / f"grid-{finding.lower().replace('_', '-')}.png"
                save_grid(images, 8, path, upscale_to=size)
                grid_written.append((finding, path.name))
    (out / "quality.json").write_text(json.dumps({"command": command, "folds": rows}, indent=2) + "\n")
    lines = ["## Synthetic image quality", "",
             "FID and KID between each fold's held-out real images and as many synthetic images made "
             "with the same label vectors by the GAN trained without that fold; features: ImageNet "
             "EfficientNet-Lite0 (offline weights, pooled, 224 px), computed with torchmetrics. The floor "
             "is the same statistic between the held-out images and as many other real images: what a "
             f"perfect generator would score on sets this small. Command: `{command}`. Not for clinical use.",
             "", "| fold | images | FID synthetic | FID real floor | KID synthetic | KID real floor |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        s, f = row["synthetic"], row["real_floor"]
        lines.append(f"| {row['fold']} | {row['held_out_images']} | {s['fid']:.1f} | {f['fid']:.1f} | "
                     f"{s['kid']:.4f} ± {s['kid_std']:.4f} | {f['kid']:.4f} ± {f['kid_std']:.4f} |")
    if rows:
        lines.append(f"| mean | | {np.mean([r['synthetic']['fid'] for r in rows]):.1f} | "
                     f"{np.mean([r['real_floor']['fid'] for r in rows]):.1f} | "
                     f"{np.mean([r['synthetic']['kid'] for r in rows]):.4f} | "
                     f"{np.mean([r['real_floor']['kid'] for r in rows]):.4f} |")
    if grid_written:
        lines += ["", "### Samples", "", "Fold 0's generator, 8 images per rare finding, each conditioned on "
                  "that finding alone.", ""]
        lines += [f"**{finding}**\n\n![{finding}]({name})\n" for finding, name in grid_written]
    path = out / "quality.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
