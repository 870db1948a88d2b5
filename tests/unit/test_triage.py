"""NEWS2 sub-scores at every boundary of the RCP chart, and the triage rule table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.news2 import (
    news2,
    news2_from_vitals,
    score_consciousness,
    score_heart_rate,
    score_resp_rate,
    score_spo2,
    score_supplemental_o2,
    score_systolic_bp,
    score_temperature,
)
from edge_agent.triage import LABELS, RULES, assess, triage
from shared.findings import FINDINGS, Finding
from shared.messages import FindingScore, Vitals

# --- NEWS2: the RCP chart, both sides of every boundary -------------------------------------------------


@pytest.mark.parametrize(("rate", "score"), [
    (0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)])
def test_resp_rate(rate: int, score: int) -> None:
    assert score_resp_rate(rate) == score


@pytest.mark.parametrize(("spo2", "score"), [
    (70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)])
def test_spo2_scale_1(spo2: int, score: int) -> None:
    assert score_spo2(spo2) == score
    assert score_spo2(spo2, supplemental_o2=True) == score  # oxygen scores separately on scale 1


@pytest.mark.parametrize(("spo2", "on_o2", "score"), [
    (83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1), (87, False, 1), (88, False, 0),
    (92, False, 0), (93, False, 0), (97, False, 0), (100, False, 0),
    (83, True, 3), (87, True, 1), (88, True, 0), (92, True, 0), (93, True, 1), (94, True, 1),
    (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3)])
def test_spo2_scale_2(spo2: int, on_o2: bool, score: int) -> None:
    assert score_spo2(spo2, supplemental_o2=on_o2, scale=2) == score


def test_spo2_scale_must_be_1_or_2() -> None:
    with pytest.raises(ValueError, match="scale"):
        score_spo2(95, scale=3)  # type: ignore[arg-type]


def test_air_or_oxygen() -> None:
    assert (score_supplemental_o2(False), score_supplemental_o2(True)) == (0, 2)


@pytest.mark.parametrize(("sbp", "score"), [
    (50, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (280, 3)])
def test_systolic_bp(sbp: int, score: int) -> None:
    assert score_systolic_bp(sbp) == score


@pytest.mark.parametrize(("pulse", "score"), [
    (20, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2),
    (131, 3), (200, 3)])
def test_heart_rate(pulse: int, score: int) -> None:
    assert score_heart_rate(pulse) == score


@pytest.mark.parametrize(("avpu", "score"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(avpu: Any, score: int) -> None:
    assert score_consciousness(avpu) == score


def test_consciousness_refuses_unknown_letters() -> None:
    with pytest.raises(ValueError, match="AVPU"):
        score_consciousness("X")  # type: ignore[arg-type]


@pytest.mark.parametrize(("celsius", "score"), [
    (30.0, 3), (35.0, 3), (35.04, 3), (35.05, 1), (35.1, 1), (36.0, 1), (36.1, 0), (37.0, 0),
    (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (42.0, 2)])
def test_temperature(celsius: float, score: int) -> None:
    assert score_temperature(celsius) == score


NORMAL = {"resp_rate": 16, "spo2_pct": 98, "supplemental_o2": False, "systolic_bp": 125,
          "heart_rate": 72, "avpu": "A", "temperature_c": 36.8}


@pytest.mark.parametrize(("changes", "total", "risk", "red"), [
    ({}, 0, "low", False),
    ({"heart_rate": 95, "resp_rate": 22}, 3, "low", False),
    ({"avpu": "C"}, 3, "low-medium", True),
    ({"spo2_pct": 91, "heart_rate": 95}, 4, "low-medium", True),
    ({"spo2_pct": 93, "supplemental_o2": True, "heart_rate": 95}, 5, "medium", False),
    ({"spo2_pct": 94, "resp_rate": 22, "systolic_bp": 105, "heart_rate": 112}, 6, "medium", False),
    ({"spo2_pct": 88, "resp_rate": 28, "supplemental_o2": True}, 8, "high", True),
    ({"resp_rate": 30, "spo2_pct": 85, "supplemental_o2": True, "systolic_bp": 85, "heart_rate": 140,
      "avpu": "U", "temperature_c": 34.0}, 20, "high", True),
])
def test_total_and_risk_bands(changes: dict[str, Any], total: int, risk: str, red: bool) -> None:
    result = news2(**(NORMAL | changes))
    assert (result.total, result.risk, result.red_score, result.complete) == (total, risk, red, True)
    assert sum(result.subscores.values()) == total and set(result.subscores) == {
        "resp_rate", "spo2", "supplemental_o2", "systolic_bp", "heart_rate", "consciousness",
        "temperature"}


def test_maximum_score_is_20() -> None:
    assert news2(resp_rate=5, spo2_pct=80, supplemental_o2=True, systolic_bp=70, heart_rate=150,
                 avpu="U", temperature_c=34.0).total == 20


def test_scale_2_for_hypercapnic_patients() -> None:
    copd = NORMAL | {"spo2_pct": 89, "supplemental_o2": True}
    assert news2(**copd).subscores["spo2"] == 3
    assert news2(**copd, spo2_scale=2).subscores["spo2"] == 0
    assert news2(**copd, spo2_scale=2).total == 2  # oxygen still scores 2


def test_missing_parameters_are_named_and_the_total_is_a_lower_bound() -> None:
    partial = news2(spo2_pct=88, resp_rate=28)
    assert partial.total == 6 and not partial.complete
    assert partial.missing == ("supplemental_o2", "systolic_bp", "heart_rate", "consciousness",
                               "temperature")
    assert "not measured" in partial.describe() and partial.describe().startswith("NEWS2 >=6")


def test_describe_names_what_scored() -> None:
    text = news2(**(NORMAL | {"spo2_pct": 88, "resp_rate": 28, "supplemental_o2": True})).describe()
    assert text == "NEWS2 8 (high risk): RR 28/min +3, SpO2 88% +3, on O2 +2"


def _vitals(**values: Any) -> Vitals:
    return Vitals(taken_at=datetime(2026, 1, 1, tzinfo=UTC), **values)


def test_news2_from_vitals_matches_keywords() -> None:
    values = NORMAL | {"spo2_pct": 90, "heart_rate": 120}
    assert news2_from_vitals(_vitals(**values)) == news2(**values)


# --- Triage: the rule table ----------------------------------------------------------------------------


def _scores(**probabilities: float) -> list[FindingScore]:
    """All 14 findings with threshold 0.5; the named ones at the given probability."""
    return [FindingScore(finding=f, probability=probabilities.get(f.value, 0.1), threshold=0.5)
            for f in FINDINGS]


CASES: list[tuple[str, dict[str, Any] | None, dict[str, float], int, list[str]]] = [
    # name, vitals (None: not entered), findings, level, reason fragments
    ("nothing at all", None, {}, 5, ["no finding suspected by the AI", "vitals not yet entered"]),
    ("normal vitals, clear image", NORMAL, {}, 5, ["NEWS2 0 (low risk)", "no finding"]),
    ("pneumothorax alone", None, {"Pneumothorax": 0.81}, 2,
     ["Pneumothorax suspected by the AI (0.81, operating point 0.50) -> level 2", "vitals not yet entered"]),
    ("effusion alone", None, {"Effusion": 0.7}, 3, ["Effusion suspected by the AI (0.70, operating point 0.50) -> level 3"]),  # noqa: E501 (a table row reads best whole)
    ("edema", NORMAL, {"Edema": 0.6}, 3, ["Edema suspected by the AI (0.60", "NEWS2 0 (low risk)"]),
    ("consolidation", NORMAL, {"Consolidation": 0.6}, 3, ["Consolidation suspected by the AI (0.60"]),
    ("pneumonia", NORMAL, {"Pneumonia": 0.9}, 3, ["Pneumonia suspected by the AI (0.90"]),
    ("nodule", NORMAL, {"Nodule": 0.6}, 4, ["Nodule suspected by the AI (0.60, operating point 0.50) -> level 4"]),  # noqa: E501 (a table row reads best whole)
    ("cardiomegaly and mass", NORMAL, {"Cardiomegaly": 0.6, "Mass": 0.7}, 4, ["Mass suspected by the AI (0.70", "Cardiomegaly"]),  # noqa: E501 (a table row reads best whole)
    ("news2 low", NORMAL | {"heart_rate": 95}, {}, 4, ["NEWS2 1 (low risk): HR 95/min +1 -> level 4"]),
    ("news2 medium", NORMAL | {"spo2_pct": 93, "supplemental_o2": True, "heart_rate": 95}, {}, 3,
     ["NEWS2 5 (medium risk)", "-> level 3"]),
    ("red score alone", NORMAL | {"temperature_c": 34.8}, {}, 3, ["T 34.8C scores 3 on NEWS2 -> level 3"]),
    ("news2 high", NORMAL | {"spo2_pct": 90, "resp_rate": 28, "heart_rate": 95}, {}, 2,
     ["NEWS2 7 (high risk): RR 28/min +3, SpO2 90% +3, HR 95/min +1 -> level 2"]),
    ("example from the brief", {"spo2_pct": 88, "resp_rate": 28}, {}, 1,
     ["NEWS2 >=6", "SpO2 88% below 90% -> level 1"]),
    ("new confusion", NORMAL | {"avpu": "C"}, {}, 2, ["AVPU C -> level 2"]),
    ("voice", NORMAL | {"avpu": "V"}, {}, 2, ["AVPU V -> level 2"]),
    ("pain", NORMAL | {"avpu": "P"}, {}, 1, ["AVPU P -> level 1"]),
    ("unresponsive", {"avpu": "U"}, {}, 1, ["AVPU U -> level 1"]),
    ("shock", NORMAL | {"systolic_bp": 75}, {}, 1, ["SBP 75 below 80 -> level 1"]),
    ("respiratory failure", NORMAL | {"resp_rate": 7}, {}, 1, ["RR 7/min, 8 or fewer -> level 1"]),
    ("copd on scale 1 is critical", NORMAL | {"spo2_pct": 88}, {}, 1, ["SpO2 88% below 90%"]),
    ("tension pneumothorax", NORMAL | {"systolic_bp": 88}, {"Pneumothorax": 0.7}, 1,
     ["Pneumothorax suspected by the AI (0.70, operating point 0.50) with SBP 88 -> level 1: possible tension"]),  # noqa: E501 (a table row reads best whole)
    ("pneumothorax with normal vitals", NORMAL, {"Pneumothorax": 0.7}, 2, ["Pneumothorax suspected by the AI (0.70"]),  # noqa: E501 (a table row reads best whole)
    ("image raises low vitals", NORMAL | {"heart_rate": 95}, {"Effusion": 0.9}, 3,
     ["Effusion suspected by the AI (0.90", "NEWS2 1 (low risk)"]),
    ("image never lowers", NORMAL | {"avpu": "U"}, {}, 1, ["AVPU U"]),
    ("partial vitals", {"heart_rate": 72}, {}, 5, ["NEWS2 >=0", "not measured"]),
]


@pytest.mark.parametrize(("name", "vitals", "findings", "level", "fragments"), CASES,
                         ids=[case[0] for case in CASES])
def test_rule_table(name: str, vitals: dict[str, Any] | None, findings: dict[str, float], level: int,
                    fragments: list[str]) -> None:
    result = assess(_scores(**findings), _vitals(**vitals) if vitals is not None else None)
    assert result.level == level, result.reasons
    assert result.label == LABELS[level]
    text = "\n".join(result.reasons)
    for fragment in fragments:
        assert fragment in text, (fragment, result.reasons)
    assert ("vitals not yet entered" in text) == (vitals is None)


def test_a_suspected_finding_says_how_reliable_it_is() -> None:
    scores = [FindingScore(finding=f, probability=0.8 if f == Finding.PNEUMOTHORAX else 0.1, threshold=0.4,
                           sensitivity=0.55, specificity=0.95) for f in FINDINGS]
    result = assess(scores, None)
    assert result.level == 2
    assert result.reasons[0].startswith("Pneumothorax suspected by the AI (0.80, operating point 0.40; "
                                        "measured out of fold: sensitivity 55%, specificity 95%) -> level 2")


def test_every_rule_is_exercised_by_the_table() -> None:
    texts = "\n".join("\n".join(assess(_scores(**f), _vitals(**v) if v is not None else None).reasons)
                      for _, v, f, _, _ in CASES)
    for rule in RULES:
        assert f"-> level {rule.level}: {rule.meaning}" in texts, rule.name


def test_vitals_entered_but_empty_count_as_not_entered() -> None:
    result = assess(_scores(Effusion=0.9), _vitals())
    assert result.level == 3 and "vitals not yet entered" in result.reasons[-1]


def test_hypercapnic_patient_on_scale_2() -> None:
    copd = _vitals(**(NORMAL | {"spo2_pct": 88, "supplemental_o2": True}))
    assert assess(_scores(), copd).level == 1
    on_scale_2 = assess(_scores(), copd, spo2_scale=2)
    assert on_scale_2.level == 4 and "scale 2" in on_scale_2.reasons[0]


def test_placeholder_is_said_last() -> None:
    result = assess(_scores(Pneumothorax=0.9), _vitals(**NORMAL), placeholder=True)
    assert "placeholder" in result.reasons[-1]


def test_triage_alias_is_image_only() -> None:
    scores = _scores(Effusion=0.9, Nodule=0.8)
    assert triage(scores, placeholder=True) == assess(scores, None, placeholder=True)
    assert triage(scores).level == 3


def test_reasons_are_capped_for_the_message() -> None:
    everything = {f.value: 0.99 for f in FINDINGS}
    worst = {"resp_rate": 5, "spo2_pct": 80, "supplemental_o2": True, "systolic_bp": 70,
             "heart_rate": 150, "avpu": "U", "temperature_c": 34.0}
    result = assess(_scores(**everything), _vitals(**worst), placeholder=True)
    assert result.level == 1 and len(result.reasons) == 20 and "placeholder" in result.reasons[-1]


vitals_strategy = st.fixed_dictionaries({}, optional={
    "spo2_pct": st.integers(40, 100), "resp_rate": st.integers(0, 80), "heart_rate": st.integers(0, 300),
    "systolic_bp": st.integers(0, 300), "temperature_c": st.floats(25, 45),
    "avpu": st.sampled_from(["A", "C", "V", "P", "U"]), "supplemental_o2": st.booleans()})


@settings(max_examples=300, deadline=None)
@given(vitals=vitals_strategy, positive=st.sets(st.sampled_from(list(Finding))),
       scale=st.sampled_from([1, 2]))
def test_the_image_never_lowers_what_the_vitals_say(vitals: dict[str, Any], positive: set[Finding],
                                                     scale: Any) -> None:
    entered = _vitals(**vitals)
    without_image = assess(_scores(), entered, spo2_scale=scale)
    with_image = assess(_scores(**{f.value: 0.9 for f in positive}), entered, spo2_scale=scale)
    image_alone = assess(_scores(**{f.value: 0.9 for f in positive}), None)
    assert with_image.level <= without_image.level
    assert with_image.level <= min(without_image.level, image_alone.level)  # a combination may add
    assert 1 <= len(with_image.reasons) <= 20


@settings(max_examples=300, deadline=None)
@given(vitals=st.one_of(st.none(), vitals_strategy),
       below=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=14, max_size=14))
def test_a_probability_below_its_operating_point_raises_nothing(vitals: dict[str, Any] | None,
                                                               below: list[tuple[float, float]]) -> None:
    """Every image rule holds only through a suspected finding: with every probability
    under its operating point, whatever the numbers, the level is what the vitals alone say."""
    scores = [FindingScore(finding=f, probability=min(a, b), threshold=max(a, b))
              for f, (a, b) in zip(FINDINGS, below, strict=True) if min(a, b) < max(a, b)]
    if len(scores) < len(FINDINGS):
        return
    entered = _vitals(**vitals) if vitals is not None else None
    assert assess(scores, entered).level == assess(_scores(), entered).level
