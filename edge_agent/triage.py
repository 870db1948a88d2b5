"""Severity from findings: a transparent rule table, pure and testable.

Levels follow the five-level emergency triage convention: 1 immediate,
2 very urgent, 3 urgent, 4 standard, 5 non-urgent. The AI result only ever
raises attention; the crew's own assessment decides.
"""

from __future__ import annotations

from shared.findings import Finding
from shared.messages import FindingScore, Triage

RULES: tuple[tuple[int, str, frozenset[Finding]], ...] = (
    (1, "immediate", frozenset({Finding.PNEUMOTHORAX})),
    (2, "very urgent", frozenset({Finding.EDEMA, Finding.CONSOLIDATION, Finding.PNEUMONIA,
                                  Finding.EFFUSION})),
    (3, "urgent", frozenset({Finding.ATELECTASIS, Finding.CARDIOMEGALY, Finding.INFILTRATION,
                             Finding.MASS, Finding.EMPHYSEMA, Finding.HERNIA})),
    (4, "standard", frozenset({Finding.NODULE, Finding.FIBROSIS, Finding.PLEURAL_THICKENING})),
)


def triage(scores: list[FindingScore], placeholder: bool = False) -> Triage:
    """The most urgent level whose findings include a positive score."""
    positive = {score.finding for score in scores if score.positive}
    matched = next(((lvl, name, sorted(positive & found)) for lvl, name, found in RULES
                    if positive & found), None)
    if matched:
        level, label, hits = matched
        reasons = [f"AI suggests {finding}" for finding in hits]
    else:
        level, label, reasons = 5, "non-urgent", ["no finding above its threshold"]
    if placeholder:
        reasons.append("placeholder model: this level means nothing clinically")
    return Triage(level=level, label=label, reasons=reasons)
