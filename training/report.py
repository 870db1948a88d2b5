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
    total = int(read_oof(run / "oof.csv", scored_only=False)["fold"].max()) + 1
    scope = f"{total}-fold" if k == total else f"the first {k} folds of a {total}-fold split"
    parts = [f"## Out-of-fold evaluation ({scope}, patient-wise, stratified)\n",
             "Every image is scored by a model that never saw its patient. 95% intervals: "
             "1,000 patient-level bootstrap rounds. Not for clinical use.\n"]
    subsets = [(f"All {len(oof['image'])} images", np.ones(len(oof["image"]), bool), False),
               (f"The {int((oof['source'] == JRZECH).sum())} {JRZECH} images", oof["source"] == JRZECH, True)]
    from training.metrics import mean_auc

    per_fold = [mean_auc(oof["labels"][oof["fold"] == f], oof["logits"][oof["fold"] == f]) for f in range(k)]
    parts.append(f"Pooling logits of {k} different fold models mixes their scales (each stopped at its own "
                 f"epoch), which lowers a pooled AUC; each fold's own mean AUC: "
                 f"{', '.join(f'{v:.3f}' for v in per_fold)} (mean {np.mean(per_fold):.3f}). The tables "
                 "below are pooled, the stricter figure.\n")
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


def compare_runs(runs: list[Path], labels: list[str], out: Path, *, rounds: int = 1000,
                 seed: int = 0) -> Path:
    """Out-of-fold mean AUC of several runs on the images all of them scored, with
    a paired patient-bootstrap 95% interval of each run's difference from the first.

    Files named ``oof-tta.csv`` beside ``oof.csv`` are included as ``<label> + TTA``.
    """
    tables = []
    for run, label in zip(runs, labels, strict=True):
        tables.append((label, read_oof(run / "oof.csv")))
        if (run / "oof-tta.csv").is_file():
            tables.append((f"{label} + TTA", read_oof(run / "oof-tta.csv")))
        if (run / "oof-foldcal.csv").is_file():  # train calibrate-folds
            tables.append((f"{label}, each fold calibrated on its own inner slice",
                           read_oof(run / "oof-foldcal.csv")))
    common = set.intersection(*[{n for n, v in zip(t["image"], t["logits"][:, 0], strict=True)
                                 if not np.isnan(v)} for _, t in tables])
    names = sorted(common)
    aligned = []
    for label, table in tables:
        position = {n: i for i, n in enumerate(table["image"])}
        index = np.array([position[n] for n in names])
        aligned.append((label, table["labels"][index], table["logits"][index], table["patient"][index],
                        table["source"][index]))
    labels0, patients = aligned[0][1], aligned[0][3]
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    draws = [np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
             for _ in range(rounds)]
    from training.metrics import mean_auc

    base = [mean_auc(labels0[d], aligned[0][2][d]) for d in draws]
    jr = aligned[0][4] == JRZECH
    jr_draws = [d[jr[d]] for d in draws]
    jr_base = [mean_auc(labels0[d], aligned[0][2][d]) for d in jr_draws]
    lines = [f"## Run comparison on the {len(names)} images every run scored out of fold "
             f"({int(jr.sum())} of them {JRZECH})", "",
             "Paired patient bootstrap (1,000 rounds) for the difference from the first row.", "",
             "| run | mean AUC | on jrzech | difference | 95% CI of difference | difference on jrzech "
             "(95% CI) |", "|---|---:|---:|---:|---|---|"]
    for label, labels, logits, _, _ in aligned:
        auc = mean_auc(labels, logits)
        jr_auc = mean_auc(labels[jr], logits[jr]) if jr.sum() > 20 else float("nan")
        diffs = np.array([mean_auc(labels[d], logits[d]) for d in draws]) - np.array(base)
        low, high = np.percentile(diffs, (2.5, 97.5))
        first = label == aligned[0][0]
        jr_text = "-"
        if not first and jr.sum() > 20:
            jr_diffs = np.array([mean_auc(labels[d], logits[d]) for d in jr_draws]) - np.array(jr_base)
            jr_low, jr_high = np.nanpercentile(jr_diffs, (2.5, 97.5))
            jr_text = (f"{jr_auc - mean_auc(labels0[jr], aligned[0][2][jr]):+.4f} "
                       f"({jr_low:+.4f} to {jr_high:+.4f})")
        lines.append(f"| {label} | {auc:.4f} | {jr_auc:.4f} | "
                     f"{'-' if first else f'{auc - mean_auc(labels0, aligned[0][2]):+.4f}'} | "
                     f"{'-' if first else f'{low:+.4f} to {high:+.4f}'} | {jr_text} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
