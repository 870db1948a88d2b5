"""The arithmetic of field performance: Wilson intervals, verdict counts,
PSI, the reference histogram's checks, the verdict body and the export's labels."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from hospital_hub.export_labelled import labels, patient_id
from hospital_hub.field_stats import FieldCounts, Reference, drift, histogram, psi, wilson
from hospital_hub.verdict_models import Verdict, VerdictCreate, all_judgements
from shared.findings import FINDINGS


def test_wilson_matches_the_closed_form_and_stays_in_0_1() -> None:
    low, high = wilson(8, 10)  # type: ignore[misc]
    # Published value for 8/10 (e.g. Newcombe 1998): 0.490 .. 0.943
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == pytest.approx(1.0)  # type: ignore[index]
    assert wilson(0, 0) is None


def test_counts_follow_the_definitions() -> None:
    counts = FieldCounts()
    counts.add(["Effusion"], {"Effusion": "confirmed", "Mass": "refuted", "Hernia": "confirmed"})
    counts.add(["Effusion", "Mass"], {"Effusion": "refuted", "Mass": "not_assessed"})
    e, m, h = (counts.findings[f] for f in ("Effusion", "Mass", "Hernia"))
    assert (e.tp, e.fp, e.fn, e.tn) == (1, 1, 0, 0)
    assert (m.tp, m.fp, m.fn, m.tn) == (0, 0, 1, 0)  # missed once; not assessed once
    assert (h.tp, h.fp, h.fn, h.tn) == (0, 0, 0, 1)
    assert e.ppv.value == 0.5 and e.ppv.total == 2 and m.sensitivity.value == 0.0
    assert counts.findings["Nodule"].ppv.value is None and counts.verdicts == 2


def test_psi_is_zero_for_the_same_shape_and_grows_with_shift() -> None:
    assert psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)
    shifted = psi([70, 20, 10], [10, 20, 70])
    assert shifted == pytest.approx(2 * 0.6 * math.log(7))
    assert psi([50, 50, 0], [50, 50, 0]) == pytest.approx(0.0)  # empty bins floored, not infinite
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    assert histogram([0.0, 0.05, 0.1, 0.99, 1.0], [0.0, 0.1, 0.5, 1.0]) == [2, 1, 2]


def test_reference_is_checked_and_drift_names_the_shifted_finding() -> None:
    bins = [i / 10 for i in range(11)]
    with pytest.raises(ValueError):
        Reference.parse({"bins": bins, "counts": [[1] * 10] * 13})
    with pytest.raises(ValueError):
        Reference.parse({"bins": [0.0, 0.5, 0.5, 1.0], "counts": [[1, 1, 1]] * 14})
    reference = Reference.parse({"bins": bins, "counts": [[80, 20, 0, 0, 0, 0, 0, 0, 0, 0]] * 14})
    rows = [[0.05 if i < 32 else 0.15] * 14 for i in range(40)]  # the reference's shape
    for row in rows:
        row[4] = 0.93
    values = drift(reference, rows)
    assert max(values, key=lambda f: values[f]) == str(FINDINGS[4]) and values[str(FINDINGS[4])] > 0.25
    assert values[str(FINDINGS[0])] == pytest.approx(0.0)


def test_verdict_body_rules() -> None:
    body = VerdictCreate(judgements={"Mass": "confirmed"}, added=["Hernia"])
    judged = all_judgements(body)
    assert judged["Mass"] == "confirmed" and judged["Hernia"] == "refuted"
    assert sum(v == "not_assessed" for v in judged.values()) == 12
    with pytest.raises(ValidationError):
        VerdictCreate(judgements={"Hernia": "confirmed"}, added=["Hernia"])
    with pytest.raises(ValidationError):
        VerdictCreate(added=["Hernia", "Hernia"])
    with pytest.raises(ValidationError):
        VerdictCreate(judgements={"Mass": "not_assessed"})


def test_export_labels_and_pseudonyms() -> None:
    verdict = Verdict(case_id="c", diagnosis_id=1, ambulance_id="a", model_name="m",
                      model_version="1", judged_by="x", suspected=["Effusion", "Mass"],
                      judgements={**{str(f): "confirmed" for f in FINDINGS}, "Mass": "refuted",
                                  "Hernia": "refuted", "Nodule": "not_assessed"},
                      added=["Hernia"])
    present, absent, unknown = labels(verdict)
    assert present == ["Effusion", "Hernia"] and unknown == ["Nodule"]
    assert "Mass" in absent and len(present) + len(absent) + len(unknown) == 14
    key = b"k" * 32
    assert patient_id(key, "case-1") == patient_id(key, "case-1")
    assert patient_id(key, "case-1") != patient_id(b"j" * 32, "case-1")
    assert 0 < patient_id(key, "case-2") < 10**9
