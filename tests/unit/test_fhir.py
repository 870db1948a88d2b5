"""The AI result as a FHIR R4B Bundle, parsed back with fhir.resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from hospital_hub import fhir
from hospital_hub.dicom_codes import FINDING_CODES
from hospital_hub.models import Case
from shared.notice import AI_NOTICE
from tests import samples
from tests.hospital_formats import MODEL_SHA, diagnosis, dicom_xray

WHEN = datetime(2026, 11, 25, 12, 1, 30, tzinfo=UTC)
STUDY = "2.25.123456789"


def _case(**changes: Any) -> Case:
    values: dict[str, Any] = {
        "id": samples.CASE_ID, "ambulance_id": "amb-1", "triage_level": 1,
        "triage_label": "resuscitation", "lat": 42.35, "lon": -71.06,
        "model_name": "chest-effnetlite0 1.1.0", "captured_at": samples.T0,
        "patient_name": "Jane Doe", "patient_sex": "F"}
    return Case(**{**values, **changes})


def _parse(bundle: Bundle) -> tuple[Bundle, dict[str, Any]]:
    """Serialise and parse back as R4B; resources by full URL."""
    parsed = Bundle.model_validate_json(bundle.model_dump_json())
    return parsed, {e.fullUrl: e.resource for e in parsed.entry or []}


def test_bundle_has_an_observation_per_positive_finding() -> None:
    result = diagnosis(dicom_xray())
    bundle, by_url = _parse(fhir.build_bundle(_case(), result, "key-1", WHEN, STUDY))
    assert bundle.type == "collection"
    report = next(r for r in by_url.values() if isinstance(r, DiagnosticReport))
    assert report.status == "preliminary"
    assert report.category[0].coding[0].code == "RAD"
    assert (report.code.coding[0].system, report.code.coding[0].code) == ("http://loinc.org", "36554-4")
    assert report.conclusion.startswith(AI_NOTICE)
    assert "Suspected by the AI: Mass 0.50" in report.conclusion
    assert "Pneumothorax 0.70 (operating point 0.50; measured sensitivity 66%, specificity 90%)" in report.conclusion  # noqa: E501
    results = [by_url[r.reference] for r in report.result]
    assert all(isinstance(o, Observation) and o.status == "preliminary" for o in results)
    findings = [o for o in results if o.valueQuantity is not None]
    positives = [s for s in result.findings if s.suspected]
    assert len(findings) == len(positives) >= 1
    for observation, score in zip(findings, positives, strict=True):
        coding = observation.code.coding[0]
        assert coding.code == FINDING_CODES[score.finding].value
        assert float(observation.valueQuantity.value) == pytest.approx(score.probability)
        assert (observation.valueQuantity.system, observation.valueQuantity.code) == (
            "http://unitsofmeasure.org", "1")
        assert observation.interpretation[0].coding[0].code == "POS"
        components = {c.code.coding[0].code: float(c.valueQuantity.value) for c in observation.component}
        assert components == {"OP_THRESHOLD": pytest.approx(score.threshold),
                              "OP_SENSITIVITY": pytest.approx(score.sensitivity),
                              "OP_SPECIFICITY": pytest.approx(score.specificity)}
        assert "suspected by the AI" in observation.interpretation[0].text
        assert MODEL_SHA in observation.method.text and "chest-effnetlite0" in observation.method.text
        assert observation.note[0].text.startswith(AI_NOTICE)
        assert observation.category[0].coding[0].code == "imaging"
        device = by_url[observation.device.reference]
        assert device.identifier[0].value == MODEL_SHA and device.version[0].value == "1.1.0"
    # SNOMED CT where there is a code, the project's own system otherwise
    systems = {o.code.coding[0].code: o.code.coding[0].system for o in findings}
    assert systems["36118008"] == "http://snomed.info/sct"
    assert systems["PLEURAL_THICK"] == fhir.GOLDENHOUR_SYSTEM


def test_triage_patient_and_imaging_study() -> None:
    bundle, by_url = _parse(fhir.build_bundle(_case(), diagnosis(dicom_xray()), "key-1", WHEN, STUDY))
    report = next(r for r in by_url.values() if isinstance(r, DiagnosticReport))
    triage = next(by_url[r.reference] for r in report.result
                  if by_url[r.reference].valueCodeableConcept is not None)
    assert triage.code.coding[0].code == "TRIAGE_LEVEL"
    level = triage.valueCodeableConcept.coding[0]
    assert (level.system, level.code, level.display) == (fhir.TRIAGE_SYSTEM, "1", "resuscitation")
    patient = by_url[report.subject.reference]
    assert patient.gender == "female" and patient.identifier[0].value == samples.CASE_ID
    study = by_url[report.imagingStudy[0].reference]
    assert study.identifier[0].value == f"urn:oid:{STUDY}"
    assert study.subject.reference == report.subject.reference
    assert all(o.derivedFrom[0].reference == report.imagingStudy[0].reference
               for o in (by_url[r.reference] for r in report.result))


def test_without_a_study_uid_or_positive_findings() -> None:
    result = diagnosis(dicom_xray())
    negative = result.model_copy(update={"findings": [s.model_copy(update={"probability": 0.01})
                                                      for s in result.findings]})
    _, by_url = _parse(fhir.build_bundle(_case(patient_name=None, patient_sex=None), negative,
                                         "key-2", WHEN, None))
    kinds = sorted(type(r).__name__ for r in by_url.values())
    assert kinds == ["Device", "DiagnosticReport", "Observation", "Patient"]  # the triage only
    report = next(r for r in by_url.values() if isinstance(r, DiagnosticReport))
    assert report.imagingStudy is None and "Suspected by the AI: none" in report.conclusion


def test_same_diagnosis_same_bundle() -> None:
    result = diagnosis(dicom_xray())
    first = fhir.build_bundle(_case(), result, "key-1", WHEN, STUDY).model_dump_json()
    assert first == fhir.build_bundle(_case(), result, "key-1", WHEN, STUDY).model_dump_json()
    assert first != fhir.build_bundle(_case(), result, "key-3", WHEN, STUDY).model_dump_json()
