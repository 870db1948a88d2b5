"""``train evaluate``: per-finding AUC tables (Markdown) and ROC curves (PNG)
from a run's out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from sklearn.metrics import roc_curve

from shared.datapaths import data_dir
from shared.findings import FINDINGS
from training.classify import JRZECH, read_oof
from training.data import SAMPLE_SUBDIR, TEACHER_FILE, load_teacher
from training.metrics import AucRow, auc_table


def _table(title: str, rows: list[AucRow], mean: AucRow, reference: list[float] | None) -> str:
    head = "| finding | positives | AUC | 95% CI |" + (" reference DenseNet-121 |" if reference else "")
    rule = "|---|---:|---:|---|" + ("---:|" if reference else "")
    lines = [f"### {title}", "", head, rule]
    for i, row in enumerate(rows):
        ref = f" {reference[i]:.3f} |" if reference else ""
        lines.append(f"| {row.finding} | {row.positives} | {row.auc:.3f} | "
                     f"{row.low:.3f}-{row.high:.3f} |{ref}")
    ref_mean = f" {np.nanmean(reference):.3f} |" if reference else ""
    lines.append(f"| **mean** | | **{mean.auc:.3f}** | {mean.low:.3f}-{mean.high:.3f} |{ref_mean}")
    return "\n".join(lines) + "\n"


def _reference_aucs(names: np.ndarray, labels: np.ndarray) -> list[float] | None:
    root = data_dir()
    path = root / SAMPLE_SUBDIR / TEACHER_FILE if root else None
    if path is None or not path.is_file():
        return None
    teacher = load_teacher(path, list(names))
    if np.isnan(teacher).any():
        return None
    rows, _ = auc_table(labels, teacher, np.arange(len(names)), rounds=1)
    return [r.auc for r in rows]


def write_evaluation(run: Path, out: Path, console: Console) -> list[Path]:
    """Write ``evaluation.md`` and ``roc.png`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oof = read_oof(run / "oof.csv")
    out.mkdir(parents=True, exist_ok=True)
    k = int(oof["fold"].max()) + 1
    parts = [f"## Out-of-fold evaluation ({k}-fold, patient-wise, stratified)\n",
             "Every image is scored by a model that never saw its patient. 95% intervals: "
             "1,000 patient-level bootstrap rounds. Not for clinical use.\n"]
    subsets = [(f"All {len(oof['image'])} images", np.ones(len(oof["image"]), bool), False),
               (f"The {int((oof['source'] == JRZECH).sum())} {JRZECH} images", oof["source"] == JRZECH, True)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    for (title, mask, with_reference), axis in zip(subsets, axes, strict=True):
        if mask.sum() < 20:
            continue
        labels, logits = oof["labels"][mask], oof["logits"][mask]
        rows, mean = auc_table(labels, logits, oof["patient"][mask])
        reference = _reference_aucs(oof["image"][mask], labels) if with_reference else None
        parts.append(_table(title, rows, mean, reference))
        console.print(f"{title}: mean AUC {mean.auc:.4f} ({mean.low:.4f}-{mean.high:.4f})")
        for j, finding in enumerate(FINDINGS):
            if labels[:, j].min() == labels[:, j].max():
                continue
            fpr, tpr, _ = roc_curve(labels[:, j], logits[:, j])
            axis.plot(fpr, tpr, linewidth=1, label=f"{finding} {rows[j].auc:.2f}")
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axis.set(title=f"{title}\nmean AUC {mean.auc:.3f}", xlabel="1 - specificity", ylabel="sensitivity")
        axis.legend(fontsize=7, loc="lower right")
    fig.suptitle("Out-of-fold ROC curves (not for clinical use)")
    fig.tight_layout()
    png = out / "roc.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    md = out / "evaluation.md"
    md.write_text("\n".join(parts), encoding="utf-8")
    return [md, png]
