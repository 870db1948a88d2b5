"""The pre-registered rule of model round 2 (docs/model-round2/preregistered.md),
applied mechanically: run B ships instead of A when, on the images and boxed
findings both runs scored out of fold, B's pointing game is higher and the
upper bound of the paired patient-bootstrap 95% interval of B - A in mean AUC
is above 0. ``python -m training.round2_rule RUN_A RUN_B`` prints ``a`` or ``b``
on stdout and the figures on stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.classify import JRZECH, read_oof
from training.metrics import mean_auc


@dataclass(frozen=True)
class Verdict:
    """The figures the rule looks at and its choice."""

    images: int
    auc_a: float
    auc_b: float
    difference_ci95: tuple[float, float]
    pointing_pairs: int
    pointing_a: float
    pointing_b: float
    pick: str
    jrzech_images: int = 0
    """Among ``images``, those of the jrzech/reproduce-chexnet subset (reported, not in the rule)."""
    auc_a_jrzech: float = float("nan")
    auc_b_jrzech: float = float("nan")


def _pointing(run: Path) -> dict[tuple[str, str], bool]:
    return {(r["image"], r["finding"]): bool(r["hit"])
            for r in json.loads((run / "localisation.json").read_text(encoding="utf-8"))}


def decide(run_a: Path, run_b: Path, *, rounds: int = 1000, seed: int = 0,
           folds: frozenset[int] | None = None) -> Verdict:
    """The rule's figures on the images both runs scored (of ``folds`` only, when given)."""
    a, b = read_oof(run_a / "oof.csv"), read_oof(run_b / "oof.csv")
    kept = a["image"] if folds is None else a["image"][np.isin(a["fold"], sorted(folds))]
    common = sorted(set(kept) & set(b["image"]))
    row_a = {name: i for i, name in enumerate(a["image"])}
    row_b = {name: i for i, name in enumerate(b["image"])}
    ia = np.array([row_a[n] for n in common])
    ib = np.array([row_b[n] for n in common])
    labels, za, zb, patients = a["labels"][ia], a["logits"][ia], b["logits"][ib], a["patient"][ia]
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    diffs = []
    for _ in range(rounds):
        d = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        diffs.append(mean_auc(labels[d], zb[d]) - mean_auc(labels[d], za[d]))
    low, high = np.percentile(diffs, (2.5, 97.5)) if diffs else (np.nan, np.nan)  # rounds=0: no interval
    pa, pb = _pointing(run_a), _pointing(run_b)
    scored = set(common)
    pairs = sorted(p for p in set(pa) & set(pb) if p[0] in scored)
    hit_a = float(np.mean([pa[p] for p in pairs])) if pairs else float("nan")
    hit_b = float(np.mean([pb[p] for p in pairs])) if pairs else float("nan")
    pick = "b" if pairs and hit_b > hit_a and high > 0 else "a"
    jr = a["source"][ia] == JRZECH
    return Verdict(len(common), mean_auc(labels, za), mean_auc(labels, zb), (float(low), float(high)),
                   len(pairs), hit_a, hit_b, pick, int(jr.sum()),
                   mean_auc(labels[jr], za[jr]) if jr.sum() > 20 else float("nan"),
                   mean_auc(labels[jr], zb[jr]) if jr.sum() > 20 else float("nan"))


def main() -> None:
    verdict = decide(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(verdict.__dict__), file=sys.stderr)  # noqa: T201 (a command's output)
    print(verdict.pick)  # noqa: T201


if __name__ == "__main__":
    main()
