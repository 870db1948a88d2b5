"""``train compare``: several backbones on identical folds, one table.

EfficientNet-Lite0, -Lite1 and -Lite2 start from the offline ImageNet weights
and fine-tune their stride-32 stages (lite0: ``cut`` 11; the same stages in
the others); every other backbone has no offline weights here, so it
trains end to end from scratch (``cut`` 0) on the same cached views. Backbone
names are timm's: the research's six are ``efficientnet_b0``,
``mobilenetv2_100``, ``nasnetalarge``, ``densenet201``,
``inception_resnet_v2`` and ``legacy_xception`` (the big ones want a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from training.classify import JRZECH, read_oof
from training.metrics import auc_table
from training.models import LITE_WEIGHTS
from training.run_classify import ClassifyRequest, run_classify


def run_compare(backbones: list[str], out: Path, data_root: Path, *, folds: int, size: int, views: int,
                epochs: int, limit: int | None, seed: int, command: str, console: Console) -> Path:
    """Cross-validate each backbone and write ``comparison.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in backbones:
        run = out / name
        console.rule(name)
        summary = run_classify(ClassifyRequest(
            out=run, data_root=data_root, labels_csv=None, images=None, folds=folds, size=size,
            cut=-1 if name in LITE_WEIGHTS else 0, views=views, epochs=epochs,
            lr=1e-3 if name in LITE_WEIGHTS else 2e-3,
            distill=0.0, teacher=False, limit=limit, final=False, seed=seed, command=command,
            backbone=name), console)
        oof = read_oof(run / "oof.csv")
        _, mean = auc_table(oof["labels"], oof["logits"], oof["patient"], rounds=500)
        jr = oof["source"] == JRZECH
        jr_mean = auc_table(oof["labels"][jr], oof["logits"][jr], oof["patient"][jr], rounds=500)[1] \
            if jr.sum() >= 20 else None
        rows.append((name, summary, mean, jr_mean))
    lines = ["## Backbone comparison", "",
             f"Identical {folds}-fold patient-wise stratified folds, {size} px, {views} cached views, up to "
             f"{epochs} epochs, seed {seed}. Command: `{command}`. Out-of-fold mean AUC with 95% "
             "patient-bootstrap intervals. Not for clinical use.", "",
             "| backbone | start | mean AUC (all) | 95% CI | mean AUC (jrzech) | CV time |",
             "|---|---|---:|---|---:|---:|"]
    for name, summary, mean, jr_mean in rows:
        backbone = summary["backbone"]
        assert isinstance(backbone, dict)
        jr_text = "-" if jr_mean is None else f"{jr_mean.auc:.3f} ({jr_mean.low:.3f}-{jr_mean.high:.3f})"
        lines.append(f"| {name} | {backbone['pretrained']} | {mean.auc:.3f} | {mean.low:.3f}-{mean.high:.3f} "
                     f"| {jr_text} | {float(summary['cv_seconds']) / 60:.1f} min |")
    path = out / "comparison.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "comparison.json").write_text(json.dumps(
        {name: {"mean_auc": mean.auc, "ci95": [mean.low, mean.high]} for name, _, mean, _ in rows},
        indent=2) + "\n", encoding="utf-8")
    console.print(path.read_text(encoding="utf-8"))
    return path



