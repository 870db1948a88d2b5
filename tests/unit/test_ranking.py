"""Ranking: needs from findings, scores, explanations and their invariants."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from hospital_hub.ranking import Needs, Policy, Site, needs_for, rank_sites, score_site
from hospital_hub.travel import Travel
from shared.findings import Finding

POLICY = Policy()


def _site(id_: str = "a", **kwargs) -> Site:  # type: ignore[no-untyped-def]
    base = dict(id=id_, name=id_.upper(), er_beds=5, icu_beds=2, ct=True, thoracic_surgery=True,
                chest_tube=True, isolation_rooms=1, paediatrics=True, er_beds_free=3,
                icu_beds_free=1, capacity_age_s=60.0)
    base.update(kwargs)
    return Site(**base)  # type: ignore[arg-type]


def _travel(minutes: float) -> Travel:
    return Travel(eta_min=minutes, distance_km=minutes * 0.6, source="estimate")


def test_needs_follow_findings_triage_and_age() -> None:
    needs = needs_for(1, [Finding.PNEUMOTHORAX, Finding.PNEUMONIA], age_years=8)
    assert needs.required == {"chest_tube": "suspected pneumothorax", "icu": "triage level 1"}
    assert set(needs.preferred) == {"thoracic_surgery", "isolation", "paediatrics"}
    assert needs_for(4, []).required == {} and needs_for(4, []).preferred == {}
    assert "icu" in needs_for(2, []).preferred


def test_explanation_says_why() -> None:
    needs = needs_for(1, [Finding.PNEUMOTHORAX])
    lacking = _site("b", chest_tube=False, thoracic_surgery=False, er_beds_free=0)
    _, missing, _, text = score_site(lacking, _travel(7), needs, POLICY)
    assert missing == ("chest_tube",)
    assert text.startswith("7 min (estimate), 0 ER beds free")
    assert "NO chest drain (needed: suspected pneumothorax)" in text
    _, _, _, good = score_site(_site(), Travel(7, 5, "routing"), needs, POLICY)
    assert good.startswith("7 min, 3 ER beds free") and "chest drain available" in good


def test_stale_and_unreported_capacity_are_discounted_not_trusted() -> None:
    needs = needs_for(3, [])
    fresh_full = _site(er_beds_free=0, capacity_age_s=10)
    stale_full = _site(er_beds_free=0, capacity_age_s=3600)
    unknown = _site(er_beds_free=None, capacity_age_s=None)
    scores = {name: score_site(site, _travel(10), needs, POLICY)
              for name, site in [("fresh", fresh_full), ("stale", stale_full),
                                 ("unknown", unknown)]}
    assert scores["stale"][0] == scores["unknown"][0] < scores["fresh"][0]
    assert "capacity 60 min old" in scores["stale"][3]
    assert "not reported" in scores["unknown"][3]


def test_not_accepting_is_skipped_only_while_the_report_is_fresh() -> None:
    needs = needs_for(3, [])
    travel = {"a": _travel(5), "b": _travel(9)}
    closed = [_site("a", accepting=False, capacity_age_s=30), _site("b")]
    assert [c.site.id for c in rank_sites(closed, travel, needs)] == ["b"]
    old = [_site("a", accepting=False, capacity_age_s=7200), _site("b")]
    assert [c.site.id for c in rank_sites(old, travel, needs)] == ["a", "b"]
    assert rank_sites(old, travel, needs, exclude={"a", "b"}) == []


sites_strategy = st.builds(
    _site,
    id_=st.sampled_from(["a"]),
    er_beds_free=st.one_of(st.none(), st.integers(0, 20)),
    icu_beds_free=st.one_of(st.none(), st.integers(0, 5)),
    capacity_age_s=st.one_of(st.none(), st.floats(0, 7200)),
    chest_tube=st.booleans(), thoracic_surgery=st.booleans(), ct=st.booleans(),
    isolation_rooms=st.integers(0, 3), paediatrics=st.booleans(), open_offers=st.integers(0, 9),
)
needs_strategy = st.builds(
    needs_for, st.integers(1, 5),
    st.lists(st.sampled_from(list(Finding)), max_size=5), st.one_of(st.none(), st.integers(0, 99)))
minutes = st.floats(0, 120)


@given(sites_strategy, needs_strategy, minutes)
def test_lacking_a_required_capability_never_outranks_a_capable_er(
        site: Site, needs: Needs, eta: float) -> None:
    capable = dataclasses.replace(site, id="capable", chest_tube=True, thoracic_surgery=True,
                                  isolation_rooms=2, ct=True, paediatrics=True, icu_beds=3,
                                  icu_beds_free=None if site.icu_beds_free is None else 3)
    lacking = dataclasses.replace(site, id="lacking", chest_tube=False, thoracic_surgery=False,
                                  isolation_rooms=0, ct=False, paediatrics=False, icu_beds=0,
                                  icu_beds_free=None if site.icu_beds_free is None else 0)
    ranked = rank_sites([lacking, capable], {"capable": _travel(eta), "lacking": _travel(eta)},
                        needs)
    assert len(ranked) == 2
    if needs.required:
        assert ranked[0].site.id == "capable"
        assert ranked[1].missing_required == tuple(sorted(needs.required))


@given(sites_strategy, needs_strategy, minutes, st.integers(0, 20), st.integers(1, 20))
def test_more_free_beds_never_lowers_a_site(site: Site, needs: Needs, eta: float, free: int,
                                            more: int) -> None:
    fewer = dataclasses.replace(site, er_beds_free=free)
    richer = dataclasses.replace(site, er_beds_free=free + more)
    assert (score_site(richer, _travel(eta), needs, POLICY)[0]
            <= score_site(fewer, _travel(eta), needs, POLICY)[0])


@given(sites_strategy, needs_strategy, minutes, st.floats(0.1, 60))
def test_a_closer_er_never_ranks_below_an_otherwise_equal_farther_one(
        site: Site, needs: Needs, eta: float, extra: float) -> None:
    near, far = dataclasses.replace(site, id="near"), dataclasses.replace(site, id="far")
    ranked = rank_sites([far, near], {"near": _travel(eta), "far": _travel(eta + extra)}, needs)
    assert [c.site.id for c in ranked][:1] in ([], ["near"])


@given(st.lists(sites_strategy, min_size=1, max_size=8), needs_strategy, st.randoms())
def test_ranking_is_deterministic_whatever_the_input_order(
        sites: list[Site], needs: Needs, rnd) -> None:  # type: ignore[no-untyped-def]
    sites = [dataclasses.replace(s, id=f"s{i}") for i, s in enumerate(sites)]
    travel = {s.id: _travel(3.0 * (i % 4)) for i, s in enumerate(sites)}
    first = rank_sites(sites, travel, needs)
    shuffled = list(sites)
    rnd.shuffle(shuffled)
    assert rank_sites(shuffled, travel, needs) == first
    scores = [c.score for c in first]
    assert scores == sorted(scores) and [c.rank for c in first] == list(range(1, len(first) + 1))
