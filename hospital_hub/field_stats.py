"""The arithmetic of model performance in the field, kept pure: counts from
ER verdicts, rates with Wilson intervals, and the population stability index.

Per finding, from each diagnosis's latest verdict (``not_assessed`` counts nowhere):

- ``tp``: suspected by the AI, confirmed by the ER (present)
- ``fp``: suspected, refuted (absent)
- ``fn``: not suspected, refuted (present: the ER added it as missed)
- ``tn``: not suspected, confirmed (absent)

PPV = tp / (tp + fp), the judged suspected findings; sensitivity = tp / (tp + fn),
the findings the ER found present among those it assessed. Both are only as
good as what ERs choose to judge (verification bias): a finding nobody looks
at counts nowhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.findings import FINDINGS

Z95 = 1.959963984540054
PSI_FLOOR = 1e-4
"""Smallest bin share used in the PSI (an empty bin would make it infinite)."""


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None for ``total`` 0)."""
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """A proportion with its counts and 95% Wilson interval."""

    successes: int
    total: int

    @property
    def value(self) -> float | None:
        return self.successes / self.total if self.total else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        return wilson(self.successes, self.total)

    def as_dict(self) -> dict[str, object]:
        return {"value": self.value, "successes": self.successes, "total": self.total,
                "ci95": self.ci95}


@dataclass
class FindingCounts:
    """One finding's verdict counts (see the module's definitions)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def ppv(self) -> Rate:
        return Rate(self.tp, self.tp + self.fp)

    @property
    def sensitivity(self) -> Rate:
        return Rate(self.tp, self.tp + self.fn)


@dataclass
class FieldCounts:
    """Counts of every finding over a set of verdicts."""

    verdicts: int = 0
    findings: dict[str, FindingCounts] = field(
        default_factory=lambda: {str(f): FindingCounts() for f in FINDINGS})

    def add(self, suspected: Iterable[str], judgements: dict[str, str]) -> None:
        """Count one verdict."""
        self.verdicts += 1
        flagged = set(suspected)
        for name, counts in self.findings.items():
            judgement = judgements.get(name, "not_assessed")
            if judgement == "not_assessed":
                continue
            confirmed = judgement == "confirmed"
            if name in flagged:
                if confirmed:
                    counts.tp += 1
                else:
                    counts.fp += 1
            elif confirmed:
                counts.tn += 1
            else:
                counts.fn += 1

    def as_dict(self) -> dict[str, object]:
        return {"verdicts": self.verdicts, "findings": {
            name: {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn, "ppv": c.ppv.as_dict(),
                   "sensitivity": c.sensitivity.as_dict()}
            for name, c in self.findings.items()}}


def histogram(values: Sequence[float], bins: Sequence[float]) -> list[int]:
    """Counts of ``values`` in ``bins`` (edges, ascending; the last bin includes its right edge)."""
    counts = [0] * (len(bins) - 1)
    for value in values:
        for i in range(len(counts)):
            last = i == len(counts) - 1
            if bins[i] <= value < bins[i + 1] or (last and value == bins[i + 1]):
                counts[i] += 1
                break
    return counts


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index between two histograms over the same bins:
    sum over bins of (c - r) * ln(c / r), on shares floored at :data:`PSI_FLOOR`.
    Usual reading: < 0.1 stable, 0.1-0.25 some shift, > 0.25 a significant shift."""
    if len(reference) != len(current) or not reference:
        raise ValueError("histograms need the same, non-zero number of bins")
    ref_total, cur_total = float(sum(reference)), float(sum(current))
    if ref_total <= 0 or cur_total <= 0:
        raise ValueError("a histogram without counts has no distribution")
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r_share = max(r / ref_total, PSI_FLOOR)
        c_share = max(c / cur_total, PSI_FLOOR)
        total += (c_share - r_share) * math.log(c_share / r_share)
    return total


@dataclass(frozen=True)
class Reference:
    """A model's validation distribution of predicted probabilities: bin edges
    and, per finding (canonical order), the count of out-of-fold predictions per bin."""

    bins: tuple[float, ...]
    counts: tuple[tuple[float, ...], ...]

    @classmethod
    def parse(cls, raw: object) -> Reference:
        """From the manifest's ``reference_histogram`` (a dict or a model with
        ``bins`` and ``counts``).

        Raises:
            ValueError: not 14 rows of ``len(bins) - 1`` counts over ascending edges.
        """
        data = raw.model_dump() if hasattr(raw, "model_dump") else raw
        if not isinstance(data, dict):
            raise ValueError("reference_histogram must have bins and counts")
        bins = tuple(float(b) for b in data["bins"])
        counts = tuple(tuple(float(c) for c in row) for row in data["counts"])
        if len(bins) < 2 or any(b >= a for b, a in zip(bins, bins[1:], strict=False)):
            raise ValueError("reference bins must be at least two ascending edges")
        if len(counts) != len(FINDINGS) or any(len(row) != len(bins) - 1 for row in counts):
            raise ValueError(f"reference counts must be {len(FINDINGS)} rows of {len(bins) - 1}")
        return cls(bins, counts)


def drift(reference: Reference, probabilities: Sequence[Sequence[float]]) -> dict[str, float]:
    """PSI per finding of a window of diagnoses (rows: 14 probabilities in canonical order)."""
    out = {}
    for i, finding in enumerate(FINDINGS):
        current = histogram([row[i] for row in probabilities], reference.bins)
        out[str(finding)] = psi(reference.counts[i], current)
    return out
