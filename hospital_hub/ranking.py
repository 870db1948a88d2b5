"""Ranking ERs for a case: pure and deterministic, no I/O.

A candidate's score is in minutes-equivalent, lower is better: the travel time
weighted by urgency, plus penalties for missing capabilities, for few or
unknown free beds, and for offers the ER already has open. Each rule is in
:data:`NEEDS` or :class:`Policy` and appears in the candidate's explanation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hospital_hub.travel import Travel
from shared.findings import Finding

CAPABILITY_LABELS = {
    "chest_tube": "chest drain",
    "thoracic_surgery": "thoracic surgery",
    "isolation": "isolation room",
    "ct": "CT",
    "icu": "ICU bed",
    "paediatrics": "paediatrics",
}

NEEDS: tuple[tuple[Finding, str, bool, str], ...] = (
    # finding, capability, required (else preferred), why
    (Finding.PNEUMOTHORAX, "chest_tube", True, "suspected pneumothorax"),
    (Finding.PNEUMOTHORAX, "thoracic_surgery", False, "suspected pneumothorax"),
    (Finding.EFFUSION, "chest_tube", False, "suspected effusion"),
    (Finding.PNEUMONIA, "isolation", False, "suspected infectious pneumonia"),
    (Finding.CONSOLIDATION, "isolation", False, "suspected infectious consolidation"),
    (Finding.MASS, "ct", False, "suspected mass"),
)
"""Capabilities that a positive finding requires or prefers."""


@dataclass(frozen=True)
class Needs:
    """What the patient needs of an ER, with the reason for each."""

    triage_level: int
    required: Mapping[str, str] = field(default_factory=dict)
    preferred: Mapping[str, str] = field(default_factory=dict)


def needs_for(triage_level: int, positive: Iterable[str], age_years: int | None = None) -> Needs:
    """Derive the capabilities a case needs from its findings, triage and age."""
    found = set(positive)
    required: dict[str, str] = {}
    preferred: dict[str, str] = {}
    for finding, capability, is_required, why in NEEDS:
        if finding in found:
            (required if is_required else preferred).setdefault(capability, why)
    if triage_level == 1:
        required.setdefault("icu", "triage level 1")
    elif triage_level == 2:
        preferred.setdefault("icu", "triage level 2")
    if age_years is not None and age_years < 16:
        preferred.setdefault("paediatrics", f"patient aged {age_years}")
    for capability in required:
        preferred.pop(capability, None)
    return Needs(triage_level, required, preferred)


@dataclass(frozen=True)
class Site:
    """An ER as ranking sees it: registry facts and live state."""

    id: str
    name: str
    er_beds: int
    icu_beds: int = 0
    ct: bool = False
    thoracic_surgery: bool = False
    chest_tube: bool = False
    isolation_rooms: int = 0
    paediatrics: bool = False
    er_beds_free: int | None = None
    """Live report; None when never reported."""
    icu_beds_free: int | None = None
    accepting: bool = True
    capacity_age_s: float | None = None
    """Seconds since the live report; None when never reported."""
    open_offers: int = 0
    """Offers of other cases this ER has not answered yet."""


@dataclass(frozen=True)
class Policy:
    """The weights of the score; defaults suit an urban service."""

    time_weight: Mapping[int, float] = field(
        default_factory=lambda: {1: 2.0, 2: 1.5, 3: 1.0, 4: 0.8, 5: 0.6})
    missing_required_min: float = 30.0
    missing_preferred_min: float = 5.0
    stale_after_s: float = 600.0
    unknown_capacity_min: float = 6.0
    full_er_min: float = 20.0
    """Penalty at 0 free beds; it shrinks as 20 / (1 + free beds)."""
    open_offer_min: float = 2.0
    open_offer_cap: int = 5


@dataclass(frozen=True)
class Candidate:
    """A ranked ER with the figures behind its place and a plain explanation."""

    site: Site
    rank: int
    score: float
    travel: Travel
    missing_required: tuple[str, ...]
    missing_preferred: tuple[str, ...]
    explanation: str


def fresh(site: Site, policy: Policy) -> bool:
    """Whether the live capacity report is recent enough to trust."""
    return site.capacity_age_s is not None and site.capacity_age_s <= policy.stale_after_s


def has_capability(site: Site, capability: str, policy: Policy) -> bool:
    """Whether ``site`` offers ``capability`` now."""
    if capability == "chest_tube":
        return site.chest_tube or site.thoracic_surgery
    if capability == "isolation":
        return site.isolation_rooms > 0
    if capability == "icu":
        free = site.icu_beds_free if fresh(site, policy) else None
        return (free if free is not None else site.icu_beds) > 0
    return bool(getattr(site, capability))


def _capacity(site: Site, policy: Policy) -> tuple[float, str]:
    if fresh(site, policy) and site.er_beds_free is not None:
        free = site.er_beds_free
        return policy.full_er_min / (1 + free), f"{free} ER bed{'s' if free != 1 else ''} free"
    if site.capacity_age_s is None:
        return policy.unknown_capacity_min, f"free beds not reported ({site.er_beds} ER beds)"
    return policy.unknown_capacity_min, f"capacity {site.capacity_age_s / 60:.0f} min old"


def score_site(site: Site, travel: Travel, needs: Needs,
               policy: Policy) -> tuple[float, tuple[str, ...], tuple[str, ...], str]:
    """Score one ER; returns (score, missing required, missing preferred, explanation)."""
    missing_required = tuple(sorted(c for c in needs.required
                                    if not has_capability(site, c, policy)))
    missing_preferred = tuple(sorted(c for c in needs.preferred
                                     if not has_capability(site, c, policy)))
    capacity_penalty, capacity_text = _capacity(site, policy)
    pending = min(site.open_offers, policy.open_offer_cap)
    score = (travel.eta_min * policy.time_weight.get(needs.triage_level, 1.0)
             + policy.missing_required_min * len(missing_required)
             + policy.missing_preferred_min * len(missing_preferred)
             + capacity_penalty + policy.open_offer_min * pending)
    parts = [f"{travel.eta_min:.0f} min" + ("" if travel.source == "routing" else " (estimate)"),
             capacity_text]
    parts += [f"{CAPABILITY_LABELS[c]} available" for c in sorted({**needs.required,
                                                                   **needs.preferred})
              if c not in missing_required and c not in missing_preferred]
    parts += [f"NO {CAPABILITY_LABELS[c]} (needed: {needs.required[c]})" for c in missing_required]
    parts += [f"no {CAPABILITY_LABELS[c]} ({needs.preferred[c]})" for c in missing_preferred]
    if pending:
        parts.append(f"{site.open_offers} other offer{'s' if site.open_offers != 1 else ''} open")
    return round(score, 3), missing_required, missing_preferred, ", ".join(parts)


def rank_sites(sites: Iterable[Site], travel: Mapping[str, Travel], needs: Needs,
               policy: Policy | None = None, exclude: Iterable[str] = ()) -> list[Candidate]:
    """Rank the ERs that accept patients and are not in ``exclude``; ties by id."""
    policy = policy or Policy()
    skip = set(exclude)
    scored = []
    for site in sites:
        if site.id in skip or (fresh(site, policy) and not site.accepting):
            continue
        score, missing_required, missing_preferred, text = score_site(
            site, travel[site.id], needs, policy)
        scored.append((score, site.id, site, missing_required, missing_preferred, text))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [
        Candidate(site=site, rank=rank, score=score, travel=travel[site.id],
                  missing_required=req, missing_preferred=pref, explanation=text)
        for rank, (score, _, site, req, pref, text) in enumerate(scored, start=1)
    ]
