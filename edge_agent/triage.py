"""Severity from vital signs and image findings: one declarative rule table.

Five levels in the spirit of the Korean Triage and Acuity Scale (KTAS) and its
parent CTAS: 1 resuscitation, 2 emergent, 3 urgent, 4 less urgent,
5 non-urgent. Each rule of :data:`RULES` names a level and a condition on the
facts (NEWS2 from :mod:`edge_agent.news2`, the crew's vital signs, the
*suspected* findings: those at or above their operating points, which are
chosen for a stated specificity); the level is the most urgent of the rules
that hold, and every rule that holds gives a reason, so the result explains
itself. An image reason names the finding's measured sensitivity and
specificity, so the reader knows how far that evidence goes.

Because the level is the most urgent of all rules that hold, a finding on the
image can raise the severity but never lower what the vital signs say; a
probability below its operating point raises nothing. With no vital signs yet
the level comes from the image alone, and a reason says so.

This is decision support for a crew, not a triage system: the crew's own
assessment decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from edge_agent.news2 import News2, SpO2Scale, news2_from_vitals
from shared.findings import Finding
from shared.messages import FindingScore, Triage, Vitals

logger = logging.getLogger(__name__)

LABELS: dict[int, str] = {1: "resuscitation", 2: "emergent", 3: "urgent", 4: "less urgent",
                          5: "non-urgent"}
"""Name of each level."""

FLUID_OR_INFECTION = frozenset({Finding.EFFUSION, Finding.EDEMA, Finding.CONSOLIDATION,
                                Finding.PNEUMONIA})
"""Findings that raise the level to 3 (urgent)."""

MAX_REASONS = 20
"""What :class:`shared.messages.Triage` carries."""


@dataclass(frozen=True)
class Facts:
    """What the rules look at."""

    vitals: Vitals | None
    news2: News2 | None
    """None when no vital sign was entered."""
    suspected: tuple[FindingScore, ...]
    """Findings at or above their operating points, most probable first."""

    def finding(self, *wanted: Finding) -> list[FindingScore]:
        """The suspected findings among ``wanted``."""
        return [score for score in self.suspected if score.finding in wanted]


Evidence = Callable[[Facts], list[str]]
"""A rule's condition: the evidence for it (one line each), empty when it does not hold."""


@dataclass(frozen=True)
class Rule:
    """One row of the table: a level, what it means, and its condition."""

    level: int
    name: str
    meaning: str
    source: Literal["vitals", "image", "vitals+image"]
    evidence: Evidence


def _finding_text(score: FindingScore) -> str:
    name = score.finding.replace("_", " ")
    text = f"{name} suspected by the AI ({score.probability:.2f}, operating point {score.threshold:.2f}"
    if score.sensitivity is not None and score.specificity is not None:
        text += (f"; measured out of fold: sensitivity {score.sensitivity:.0%}, "
                 f"specificity {score.specificity:.0%}")
    return text + ")"


def _news(at_least: int, below: int | None = None) -> Evidence:
    def evidence(facts: Facts) -> list[str]:
        n = facts.news2
        if n is None or n.total < at_least or (below is not None and n.total >= below):
            return []
        return [n.describe()]
    return evidence


def _vital(check: Callable[[Vitals, SpO2Scale], str | None]) -> Evidence:
    def evidence(facts: Facts) -> list[str]:
        if facts.vitals is None or facts.news2 is None:
            return []
        text = check(facts.vitals, facts.news2.spo2_scale)
        return [text] if text else []
    return evidence


def _avpu(levels: str) -> Evidence:
    return _vital(lambda v, _: f"AVPU {v.avpu}" if v.avpu is not None and v.avpu in levels else None)


def _spo2_critical(v: Vitals, scale: SpO2Scale) -> str | None:
    limit = 90 if scale == 1 else 85
    if v.spo2_pct is not None and v.spo2_pct < limit:
        return f"SpO2 {v.spo2_pct}% below {limit}%"
    return None


def _shock(v: Vitals, _: SpO2Scale) -> str | None:
    return f"SBP {v.systolic_bp} below 80" if v.systolic_bp is not None and v.systolic_bp < 80 else None


def _resp_failure(v: Vitals, _: SpO2Scale) -> str | None:
    return f"RR {v.resp_rate}/min, 8 or fewer" if v.resp_rate is not None and v.resp_rate <= 8 else None


def _red_score(facts: Facts) -> list[str]:
    n = facts.news2
    if n is None or not n.red_score:
        return []
    return [f"{n.values[name]} scores 3 on NEWS2" for name, score in n.subscores.items() if score == 3]


def _findings(*wanted: Finding) -> Evidence:
    return lambda facts: [_finding_text(score) for score in facts.finding(*wanted)]


def _other_findings(facts: Facts) -> list[str]:
    covered = FLUID_OR_INFECTION | {Finding.PNEUMOTHORAX}
    return [_finding_text(score) for score in facts.suspected if score.finding not in covered]


def _tension_pneumothorax(facts: Facts) -> list[str]:
    """A pneumothorax with hypoxia or hypotension that scores 3 on NEWS2."""
    n = facts.news2
    found = facts.finding(Finding.PNEUMOTHORAX)
    if not found or n is None:
        return []
    compromised = [n.values[name] for name in ("spo2", "systolic_bp") if n.subscores.get(name) == 3]
    if not compromised:
        return []
    return [f"{_finding_text(found[0])} with {' and '.join(compromised)}"]


RULES: tuple[Rule, ...] = (
    Rule(1, "unresponsive", "responds only to pain, or unresponsive", "vitals", _avpu("PU")),
    Rule(1, "critical_hypoxia", "critical hypoxia (SpO2 below 90%, 85% on scale 2)", "vitals",
         _vital(_spo2_critical)),
    Rule(1, "shock", "shock (systolic BP below 80)", "vitals", _vital(_shock)),
    Rule(1, "respiratory_failure", "respiratory failure (RR 8/min or fewer)", "vitals",
         _vital(_resp_failure)),
    Rule(1, "tension_pneumothorax", "possible tension pneumothorax", "vitals+image", _tension_pneumothorax),
    Rule(2, "news2_high", "NEWS2 7 or more: high clinical risk", "vitals", _news(7)),
    Rule(2, "altered_consciousness", "new confusion, or responds to voice only", "vitals", _avpu("CV")),
    Rule(2, "pneumothorax", "pneumothorax on the image", "image", _findings(Finding.PNEUMOTHORAX)),
    Rule(3, "news2_medium", "NEWS2 5-6: medium clinical risk", "vitals", _news(5, 7)),
    Rule(3, "red_score", "a single NEWS2 parameter scores 3", "vitals", _red_score),
    Rule(3, "fluid_or_infection", "effusion, edema, consolidation or pneumonia on the image", "image",
         _findings(*sorted(FLUID_OR_INFECTION))),
    Rule(4, "news2_low", "NEWS2 1-4: low clinical risk", "vitals", _news(1, 5)),
    Rule(4, "other_finding", "another finding on the image", "image", _other_findings),
)
"""The whole triage policy; level 5 (non-urgent) when no rule holds."""


def _has_vitals(vitals: Vitals | None) -> bool:
    return vitals is not None and any(
        value is not None for value in (vitals.spo2_pct, vitals.resp_rate, vitals.heart_rate,
                                        vitals.systolic_bp, vitals.temperature_c, vitals.avpu,
                                        vitals.supplemental_o2))


def assess(scores: list[FindingScore], vitals: Vitals | None = None, *, placeholder: bool = False,
           spo2_scale: SpO2Scale = 1) -> Triage:
    """The triage level from the findings and (when entered) the crew's vital signs.

    Args:
        scores: the model's findings with their thresholds.
        vitals: the latest vital signs, or None before the crew entered any.
        placeholder: the findings come from a placeholder model (said in the reasons).
        spo2_scale: NEWS2 SpO2 scale 2 for hypercapnic respiratory failure.
    """
    present = _has_vitals(vitals)
    facts = Facts(vitals=vitals if present else None,
                  news2=news2_from_vitals(vitals, spo2_scale=spo2_scale) if present and vitals else None,
                  suspected=tuple(sorted((s for s in scores if s.suspected), key=lambda s: -s.probability)))
    matched = [(rule, lines) for rule in RULES if (lines := rule.evidence(facts))]
    level = min((rule.level for rule, _ in matched), default=5)
    reasons: list[str] = []
    for rule, lines in sorted(matched, key=lambda item: item[0].level):
        reasons.extend(f"{line} -> level {rule.level}: {rule.meaning}" for line in lines)
    if facts.news2 is not None and not any(rule.name.startswith("news2_") for rule, _ in matched):
        reasons.append(facts.news2.describe())
    if not matched:
        reasons.append("no finding suspected by the AI -> level 5: non-urgent")
    tail: list[str] = []
    if facts.news2 is None:
        tail.append("vitals not yet entered: level from the image alone")
    if placeholder:
        tail.append("placeholder model: the image findings mean nothing clinically")
    reasons = reasons[:MAX_REASONS - len(tail)] + tail
    logger.debug("triage", extra={"level": level, "rules": ",".join(rule.name for rule, _ in matched)})
    return Triage(level=level, label=LABELS[level], reasons=reasons)


def triage(scores: list[FindingScore], placeholder: bool = False) -> Triage:
    """Image-only triage, as the pipeline calls it before vitals exist: ``assess(scores, None)``."""
    return assess(scores, None, placeholder=placeholder)
