"""``train evaluate-localisation``: do the heat maps point at the radiologist's box?

For every image with a radiologist box, and every boxed finding on it, the
class activation map of that finding is taken from the fold model that never
saw the image's patient (saved by ``train classify`` as ``fold<k>.pt``). A hit
is the map's peak inside a box of the same finding on that image (the
"pointing game"). The chance level is what a point drawn uniformly over the
image would score: the area the boxes cover.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from shared.findings import FINDINGS, Finding
from training.boxes import Box, load_sample_boxes
from training.classify import read_oof
from training.data import SAMPLE_SUBDIR, load_pixels, load_sample
from training.models import build
from training.train import TrainConfig, cache_views


@dataclass(frozen=True)
class Pointing:
    """One boxed finding on one image and where its heat map peaks."""

    image: str
    finding: Finding
    peak_x: float
    peak_y: float
    hit: bool
    chance: float
    fold: int


def _covered_fraction(boxes: list[Box], grid: int = 64) -> float:
    ys, xs = np.mgrid[0:grid, 0:grid]
    px, py = (xs + 0.5) / grid, (ys + 0.5) / grid
    inside = np.zeros((grid, grid), bool)
    for b in boxes:
        inside |= (px >= b.x1) & (px <= b.x2) & (py >= b.y1) & (py <= b.y2)
    return float(inside.mean())


def evaluate_heat_maps(run: Path, data_root: Path, console: Console) -> list[Pointing]:
    """Pointing-game results of the run's fold models on their held-out boxed images."""
    # A cross-validation without a final fit (--no-final) has no model.pt; its
    # run.json holds the same configuration (backbone, cut, size).
    if (run / "model.pt").is_file():
        raw = dict(torch.load(run / "model.pt", weights_only=False, map_location="cpu")["config"])
    elif (run / "run.json").is_file():
        raw = dict(json.loads((run / "run.json").read_text(encoding="utf-8"))["config"])
    else:
        raw = {}
    raw.pop("augment", None)
    config = TrainConfig(**raw) if raw else TrainConfig()
    config = TrainConfig(**{**config.to_dict(), "views": 1, "augment": config.augment})
    oof = read_oof(run / "oof.csv")
    fold_of = dict(zip(oof["image"].tolist(), oof["fold"].tolist(), strict=True))
    boxes = load_sample_boxes(data_root / SAMPLE_SUBDIR / "boxes.csv")
    by_image: dict[str, list[Box]] = defaultdict(list)
    for box in boxes:
        if box.image in fold_of:
            by_image[box.image].append(box)
    dataset = load_sample(data_root, with_teacher=False)
    index = [i for i, name in enumerate(dataset.names) if name in by_image]
    subset = dataset.subset(np.array(index))
    console.print(f"{len(subset)} held-out boxed images, {sum(len(v) for v in by_image.values())} boxes")
    template, _ = build(config.backbone, config.cut)
    features = cache_views(template, load_pixels(subset, config.size), config)[0]
    results: list[Pointing] = []
    for fold in sorted(set(fold_of.values())):
        path = run / f"fold{fold}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: rerun 'goldenhour train classify' "
                                    "to save fold models")
        model, _ = build(config.backbone, config.cut)
        model.load_state_dict(torch.load(path, weights_only=True)["state_dict"], strict=False)
        model.eval()
        rows = [i for i, name in enumerate(subset.names) if fold_of[name] == fold]
        if not rows:
            continue
        with torch.no_grad():
            _, cams = model.forward_top(features[torch.as_tensor(rows)].float())
        for row, cam in zip(rows, cams.numpy(), strict=True):
            name = subset.names[row]
            for finding in sorted({b.finding for b in by_image[name]}):
                mine = [b for b in by_image[name] if b.finding == finding]
                heat = cam[FINDINGS.index(finding)]
                py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
                x, y = (px + 0.5) / heat.shape[1], (py + 0.5) / heat.shape[0]
                results.append(Pointing(name, finding, float(x), float(y),
                                        any(b.contains(x, y) for b in mine), _covered_fraction(mine), fold))
    return results


def write_localisation_report(results: list[Pointing], out: Path, data_root: Path) -> list[Path]:
    """Markdown table per finding and a PNG of good and bad examples."""
    lines = ["## Heat-map localisation (pointing game, held-out patients)", "",
             "A hit: the peak of the finding's class activation map lies inside a radiologist box of that "
             "finding on the image, scored by the fold model that never saw the patient. Chance: the "
             "share of the image the boxes cover (a uniformly random point). Not for clinical use.", "",
             "| finding | boxed findings | hits | hit rate | chance |", "|---|---:|---:|---:|---:|"]
    for finding in FINDINGS:
        mine = [r for r in results if r.finding == finding]
        if mine:
            hits = sum(r.hit for r in mine)
            lines.append(f"| {finding} | {len(mine)} | {hits} | {hits / len(mine):.1%} | "
                         f"{np.mean([r.chance for r in mine]):.1%} |")
    hits = sum(r.hit for r in results)
    lines.append(f"| **all** | {len(results)} | {hits} | **{hits / max(len(results), 1):.1%}** | "
                 f"{np.mean([r.chance for r in results]):.1%} |")
    out.mkdir(parents=True, exist_ok=True)
    md = out / "localisation.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "localisation.json").write_text(json.dumps([asdict(r) for r in results]) + "\n", encoding="utf-8")
    png = out / "localisation.png"
    _examples(results, png, data_root)
    return [md, png]


def _examples(results: list[Pointing], path: Path, data_root: Path, per_kind: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    from PIL import Image

    boxes = load_sample_boxes(data_root / SAMPLE_SUBDIR / "boxes.csv")
    rng = np.random.default_rng(0)
    good = [r for r in results if r.hit]
    bad = [r for r in results if not r.hit]
    picks = [(r, True) for r in rng.permutation(good)[:per_kind]] + \
        [(r, False) for r in rng.permutation(bad)[:per_kind]]
    fig, axes = plt.subplots(2, per_kind, figsize=(3 * per_kind, 6.4))
    for axis in axes.ravel():
        axis.axis("off")
    for k, (result, hit) in enumerate(picks):
        axis = axes[0 if hit else 1][k % per_kind]
        image = Image.open(data_root / SAMPLE_SUBDIR / "images" / result.image).convert("L")
        side = image.size[0]
        axis.imshow(image, cmap="gray")
        for b in boxes:
            if b.image == result.image and b.finding == result.finding:
                axis.add_patch(patches.Rectangle((b.x1 * side, b.y1 * side), (b.x2 - b.x1) * side,
                                                 (b.y2 - b.y1) * side, fill=False, color="lime",
                                                 linewidth=1.5))
        axis.plot(result.peak_x * side, result.peak_y * side, marker="x", color="red", markersize=12, mew=3)
        axis.set_title(f"{'hit' if hit else 'miss'}: {result.finding}", fontsize=9)
    fig.suptitle("Heat-map peak (red x) vs radiologist box (green); held-out patients; not for clinical use",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
