"""The ablation's Markdown and JSON: mean and rare-finding AUC per arm over
seeds, patient-bootstrap intervals, paired differences from the default
recipe, per-finding AUCs, and the decision whether synthetic images ship."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import rankdata

from shared.findings import FINDINGS

if TYPE_CHECKING:
    from training.ablation import Arm
    from training.data import NihDataset

ROUNDS = 1000


def aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-finding AUC for many score sets at once: labels (m, F), scores (K, m, F) -> (K, F).

    The Mann-Whitney form on average ranks (ties count one half), NaN where a
    finding has only one class.
    """
    out = np.full((scores.shape[0], labels.shape[1]), np.nan)
    for k in range(labels.shape[1]):
        y = labels[:, k].astype(bool)
        positives, negatives = int(y.sum()), int((~y).sum())
        if not positives or not negatives:
            continue
        ranks = rankdata(scores[:, :, k], axis=1)
        out[:, k] = (ranks[:, y].sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
    return out


def _ci(values: np.ndarray) -> tuple[float, float]:
    low, high = np.nanpercentile(values, (2.5, 97.5))
    return float(low), float(high)


def bootstrap(labels: np.ndarray, patients: np.ndarray, oof: dict[str, np.ndarray], rounds: int = ROUNDS,
              seed: int = 0) -> dict[str, np.ndarray]:
    """Per arm: (rounds + 1, seeds, F) AUCs; row 0 is the full data, the rest
    resample patients (the same draw for every arm, so differences are paired)."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    draws = [np.arange(len(labels))]
    for _ in range(rounds):
        draws.append(np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))]))
    return {name: np.stack([aucs(labels[d], scores[:, d]) for d in draws]) for name, scores in oof.items()}


def write_report(out: Path, dataset: NihDataset, oof: dict[str, np.ndarray], arms: Sequence[Arm],
                 rare: list[int], meta: dict[str, object]) -> Path:
    """Write ``results.json`` and ``ablation.md`` into ``out``; returns the Markdown path."""
    from training.ablation import REFERENCE

    boot = bootstrap(dataset.labels, dataset.patients, oof)
    names = [a.name for a in arms]
    reference = REFERENCE if REFERENCE in boot else names[0]

    def mean_all(b: np.ndarray) -> np.ndarray:  # (R+1,) mean over findings then seeds
        return np.nanmean(np.nanmean(b, axis=2), axis=1)

    def mean_rare(b: np.ndarray) -> np.ndarray:
        return np.nanmean(np.nanmean(b[:, :, rare], axis=2), axis=1)

    results: dict[str, dict[str, object]] = {}
    for name in names:
        b, ref = boot[name], boot[reference]
        per_seed = np.nanmean(b[0], axis=1)
        results[name] = {
            "mean_auc": float(mean_all(b)[0]), "mean_auc_ci95": _ci(mean_all(b)[1:]),
            "seed_sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "per_seed": per_seed.tolist(),
            "delta_vs_reference": float(mean_all(b)[0] - mean_all(ref)[0]),
            "delta_ci95": _ci(mean_all(b)[1:] - mean_all(ref)[1:]),
            "rare_mean_auc": float(mean_rare(b)[0]), "rare_ci95": _ci(mean_rare(b)[1:]),
            "rare_delta": float(mean_rare(b)[0] - mean_rare(ref)[0]),
            "rare_delta_ci95": _ci(mean_rare(b)[1:] - mean_rare(ref)[1:]),
            "per_finding": {str(FINDINGS[k]): float(np.nanmean(b[0, :, k])) for k in range(len(FINDINGS))},
            "per_finding_ci95": {str(FINDINGS[k]): _ci(np.nanmean(b[1:, :, k], axis=1))
                                 for k in range(len(FINDINGS))},
        }
    synthetic = [a.name for a in arms if a.synthetic_ratio > 0]
    best = max(synthetic, key=lambda n: _float(results[n]["mean_auc"])) if synthetic else None
    ship = bool(best is not None and results[best]["delta_ci95"][0] > 0  # type: ignore[index]
                and float(results[best]["rare_delta"]) >= 0)  # type: ignore[arg-type]
    adjusted = None
    if best is not None:
        # The best of several ratios was picked after looking: a Bonferroni interval says how
        # much of the gain could be that choice.
        alpha = 0.05 / len(synthetic)
        diff = mean_all(boot[best])[1:] - mean_all(boot[reference])[1:]
        adjusted = [float(v) for v in np.nanpercentile(diff, (100 * alpha / 2, 100 - 100 * alpha / 2))]
    decision = {"best_synthetic_arm": best, "ship_synthetic": ship,
                "delta_ci_bonferroni": adjusted, "synthetic_arms": len(synthetic),
                "rule": "ship only if the best synthetic arm's paired 95% interval for the mean-AUC "
                        f"difference from '{reference}' lies above 0 and its rare-finding mean does not drop"}
    (out / "results.json").write_text(json.dumps({"meta": meta, "reference": reference, "arms": results,
                                                  "decision": decision}, indent=2) + "\n", encoding="utf-8")
    path = out / "ablation.md"
    path.write_text(_markdown(results, names, reference, rare, meta, decision), encoding="utf-8")
    return path


def _float(value: object) -> float:
    return float(value)  # type: ignore[arg-type]


def _f(value: object) -> str:
    return f"{float(value):.3f}"  # type: ignore[arg-type]


def _signed(value: object) -> str:
    return f"{float(value):+.3f}"  # type: ignore[arg-type]


def _interval(pair: object) -> str:
    low, high = pair  # type: ignore[misc]
    return f"{low:+.3f} to {high:+.3f}" if low < 0 or high < 0 else f"{low:.3f}-{high:.3f}"


def _markdown(results: dict[str, dict[str, object]], names: list[str], reference: str, rare: list[int],
              meta: dict[str, object], decision: dict[str, object]) -> str:
    config = meta["config"]
    assert isinstance(config, dict)
    rare_names = [str(FINDINGS[k]) for k in rare]
    lines = [
        "## Synthetic images and other remedies for class imbalance: ablation", "",
        f"Data: {meta['data']} ({meta['images']} images of {meta['patients']} patients). "
        f"{config['folds']} patient-wise stratified folds (the classifier pipeline's split, fold seed "
        f"{config['fold_seed']}), seeds {', '.join(map(str, config['seeds']))}; EfficientNet-Lite0 top "
        f"fine-tuned on cached views at {config['size']} px, {config['views']} views, up to "
        f"{config['epochs']} epochs with inner early stopping on real images. Rare findings (fewer than "
        f"{config['rare_limit']} positives): {', '.join(rare_names)}. Command: `{meta['command']}` "
        f"({float(meta['seconds']) / 60:.0f} min for {meta.get('trained', '?')} arm-seed runs; "
        f"{meta.get('reused', 0)} reused from earlier runs in the same folder). "
        "Synthetic images only ever train; every score below is "
        "on real held-out images. Not for clinical use.", "",
        f"Mean AUC: over 14 findings, averaged over seeds (± seed SD); 95% intervals from {ROUNDS} "
        f"patient-bootstrap rounds; differences are paired, against `{reference}` (the default recipe).", "",
        "| arm | mean AUC | 95% CI | Δ vs default | Δ 95% CI | rare-finding AUC | 95% CI | Δ rare "
        "| Δ rare 95% CI |",
        "|---|---:|---|---:|---|---:|---|---:|---|"]
    for name in names:
        r = results[name]
        cells = [f"{_f(r['mean_auc'])} ± {_f(r['seed_sd'])}", _interval(r["mean_auc_ci95"]),
                 _signed(r["delta_vs_reference"]), _interval(r["delta_ci95"]), _f(r["rare_mean_auc"]),
                 _interval(r["rare_ci95"]), _signed(r["rare_delta"]), _interval(r["rare_delta_ci95"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    best = decision["best_synthetic_arm"]
    verdict = ("passes the rule" if decision["ship_synthetic"]
               else "does not pass it: the default recipe stays without synthetic images")
    lines += ["", f"**Decision** ({decision['rule']}): best synthetic arm `{best}` {verdict}."]
    if decision["delta_ci_bonferroni"] is not None:
        interval = _interval(decision["delta_ci_bonferroni"])
        lines.append(f"Allowing for the choice of the best of {decision['synthetic_arms']} synthetic arms "
                     f"(Bonferroni), its difference interval is {interval}.")
    lines += ["",
              "### Per finding (AUC, mean over seeds; * rare)", "",
              "| finding | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for k, finding in enumerate(FINDINGS):
        mark = " *" if k in rare else ""
        lines.append(f"| {finding}{mark} | " + " | ".join(
            _f(results[n]["per_finding"][str(finding)]) for n in names) + " |")  # type: ignore[index]
    lines += ["", "### Rare findings with 95% intervals", "",
              "| finding | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for finding in rare_names:
        cells = []
        for n in names:
            low, high = results[n]["per_finding_ci95"][finding]  # type: ignore[index]
            cells.append(f"{_f(results[n]['per_finding'][finding])} ({low:.2f}-{high:.2f})")  # type: ignore[index]
        lines.append(f"| {finding} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
