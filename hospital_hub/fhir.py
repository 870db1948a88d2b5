"""A case's AI result as FHIR: a Bundle (``collection``) around a DiagnosticReport.

FHIR R4B (4.3.0, the technical correction of R4: the same resources and wire
format that R4 servers read), built and validated with ``fhir.resources.R4B``.
The bundle holds:

* a **DiagnosticReport**: status ``preliminary``, category RAD (HL7 v2 table
  0074), code LOINC 36554-4 "XR Chest Single view" (an ambulance film is one
  view), conclusion starting with :data:`AI_NOTICE`;
* one **Observation** per finding at or above its operating threshold:
  the finding's code (as in the DICOM SR), ``valueQuantity`` the probability
  (UCUM ``1``), interpretation ``POS``, the threshold as a component, method
  and device naming the model and its sha256, and the notice as a note;
* an **Observation** of the triage level, ``valueCodeableConcept`` in the
  code system :data:`TRIAGE_SYSTEM` (codes ``1``-``5``, KTAS-like);
* the **Patient** (what the crew entered), the **Device** (the AI model) and,
  when its Study Instance UID is known, the **ImagingStudy** that the DICOM
  results are filed in (identifier ``urn:oid:<UID>``).

Entries are linked by ``urn:uuid:`` full URLs derived from the case and the
diagnosis, so the same diagnosis always gives the same bundle.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from sqlmodel import Session, col, select

from hospital_hub import dicom_results
from hospital_hub.dicom_codes import CHEST_XRAY, FINDING_CODES, PRIVATE_SCHEME, UID_NAMESPACE
from hospital_hub.models import Case, CaseDiagnosis
from shared.errors import NotFound
from shared.messages import DiagnosisV1, FindingScore
from shared.notice import AI_NOTICE

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/fhir+json"
GOLDENHOUR_SYSTEM = "https://goldenhour.invalid/fhir/CodeSystem/goldenhour"
"""This project's own codes (the FHIR twin of DICOM's ``99GOLDENHOUR``); the
``.invalid`` host says that nothing is published there."""
TRIAGE_SYSTEM = "https://goldenhour.invalid/fhir/CodeSystem/triage-level"
CASE_ID_SYSTEM = "https://goldenhour.invalid/fhir/NamingSystem/case-id"
MODEL_SHA_SYSTEM = "https://goldenhour.invalid/fhir/NamingSystem/model-sha256"
SYSTEMS = {"SCT": "http://snomed.info/sct", "DCM": "http://dicom.nema.org/resources/ontology/DCM",
           "LN": "http://loinc.org", PRIVATE_SCHEME: GOLDENHOUR_SYSTEM}
"""DICOM coding scheme designators and their FHIR code system URIs."""
UCUM = "http://unitsofmeasure.org"
TRIAGE_DISPLAY = {1: "resuscitation", 2: "emergent", 3: "urgent", 4: "less urgent",
                  5: "non-urgent"}
"""The edge's triage levels (KTAS-like, 1 most urgent)."""
_GENDER = {"F": "female", "M": "male", "X": "other"}


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(UID_NAMESPACE, '|'.join(('fhir', *parts)))}"


def _ref(urn: str) -> dict[str, str]:
    return {"reference": urn}


def _finding_concept(score: FindingScore) -> dict[str, Any]:
    code = FINDING_CODES[score.finding]
    return {"coding": [{"system": SYSTEMS[code.scheme_designator], "code": code.value,
                        "display": code.meaning}],
            "text": str(score.finding).replace("_", " ")}


def _model_text(diagnosis: DiagnosisV1) -> str:
    model = diagnosis.model
    text = f"AI model {model.name} {model.version}"
    return text + (f", sha256 {model.sha256}" if model.sha256 else ", no sha256") + (
        " (a placeholder, not a trained model)" if model.placeholder else "")


def _instant(moment: datetime) -> str:
    return moment.isoformat()


def _patient(case: Case) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": CASE_ID_SYSTEM, "value": case.id,
                        "type": {"text": "goldenhour ambulance case"}}],
    }
    if case.patient_name:
        patient["name"] = [{"text": case.patient_name}]
    if case.patient_sex in _GENDER:
        patient["gender"] = _GENDER[case.patient_sex]
    return patient


def _device(diagnosis: DiagnosisV1) -> dict[str, Any]:
    model = diagnosis.model
    device: dict[str, Any] = {
        "resourceType": "Device", "status": "active", "manufacturer": "goldenhour",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "version": [{"value": model.version}],
        "type": {"text": "AI chest X-ray classifier (software)"},
        "note": [{"text": AI_NOTICE}],
    }
    if model.sha256:
        device["identifier"] = [{"system": MODEL_SHA_SYSTEM, "value": model.sha256}]
    return device


def _imaging_study(study_uid: str, diagnosis: DiagnosisV1, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy", "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
        "subject": _ref(patient), "started": _instant(diagnosis.captured_at),
        "description": "Ambulance chest X-ray with goldenhour AI results",
    }


def _finding_observation(score: FindingScore, diagnosis: DiagnosisV1, common: dict[str, Any],
                         regions: int) -> dict[str, Any]:
    note = AI_NOTICE + (f" {regions} region(s) marked on the image (see the DICOM SR)."
                        if regions else "")
    return {
        "resourceType": "Observation", **common,
        "code": _finding_concept(score),
        "valueQuantity": {"value": round(score.probability, 6), "unit": "probability",
                          "system": UCUM, "code": "1"},
        "interpretation": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "POS", "display": "Positive"}],
            "text": "suspected by the AI: at or above the model's operating point"}],
        "component": [_component(code, display, value) for code, display, value in (
            ("OP_THRESHOLD", "AI operating point", score.threshold),
            ("OP_SENSITIVITY", "Sensitivity at the operating point, out of fold", score.sensitivity),
            ("OP_SPECIFICITY", "Specificity at the operating point, out of fold", score.specificity),
        ) if value is not None],
        "note": [{"text": note}],
    }


def _component(code: str, display: str, value: float) -> dict[str, Any]:
    return {"code": {"coding": [{"system": GOLDENHOUR_SYSTEM, "code": code, "display": display}]},
            "valueQuantity": {"value": round(value, 6), "unit": "probability", "system": UCUM, "code": "1"}}


def _triage_observation(diagnosis: DiagnosisV1, case: Case, common: dict[str, Any]) -> dict[str, Any]:
    level = case.triage_level
    reasons = "; ".join(diagnosis.triage.reasons) if level == diagnosis.triage.level else ""
    return {
        "resourceType": "Observation", **common,
        "method": {"text": "goldenhour triage rules: NEWS2 vital signs and the AI findings"},
        "code": {"coding": [{"system": GOLDENHOUR_SYSTEM, "code": "TRIAGE_LEVEL",
                             "display": "Pre-hospital triage level (KTAS-like)"}]},
        "valueCodeableConcept": {
            "coding": [{"system": TRIAGE_SYSTEM, "code": str(level),
                        "display": TRIAGE_DISPLAY[level]}],
            "text": case.triage_label},
        "note": [{"text": f"{AI_NOTICE}. From the AI findings and the crew's vital signs"
                          + (f": {reasons}" if reasons else ".")}],
    }


def build_bundle(case: Case, diagnosis: DiagnosisV1, diagnosis_key: str, diagnosed_at: datetime,
                 study_uid: str | None) -> Bundle:
    """The FHIR R4B collection Bundle of one diagnosis of ``case`` (see the
    module docstring); ``study_uid`` None leaves the ImagingStudy out."""
    urn = {name: _urn(case.id, diagnosis_key, name)
           for name in ("bundle", "report", "patient", "device", "study", "triage")}
    common: dict[str, Any] = {
        "status": "preliminary",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "imaging", "display": "Imaging"}]}],
        "subject": _ref(urn["patient"]), "effectiveDateTime": _instant(diagnosis.captured_at),
        "issued": _instant(diagnosed_at), "device": _ref(urn["device"]),
        "method": {"coding": [{"system": GOLDENHOUR_SYSTEM, "code": "AI_CLASSIFIER",
                               "display": "AI classification of the chest X-ray"}],
                   "text": _model_text(diagnosis)},
    }
    if study_uid:
        common["derivedFrom"] = [_ref(urn["study"])]
    resources: list[tuple[str, dict[str, Any]]] = []
    for score in diagnosis.findings:
        if score.suspected:
            regions = sum(1 for r in diagnosis.regions if r.finding == score.finding)
            resources.append((_urn(case.id, diagnosis_key, "finding", str(score.finding)),
                              _finding_observation(score, diagnosis, common, regions)))
    resources.append((urn["triage"], _triage_observation(diagnosis, case, common)))
    suspected = [f"{s.finding} {s.probability:.2f} (operating point {s.threshold:.2f}"
                 + (f"; measured sensitivity {s.sensitivity:.0%}, specificity {s.specificity:.0%}"
                    if s.sensitivity is not None and s.specificity is not None else "") + ")"
                 for s in diagnosis.findings if s.suspected]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "status": "preliminary",
        "identifier": [{"system": CASE_ID_SYSTEM, "value": case.id}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                  "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": CHEST_XRAY.value,
                             "display": CHEST_XRAY.meaning}],
                 "text": "Chest X-ray in the ambulance: AI findings"},
        "subject": _ref(urn["patient"]), "effectiveDateTime": _instant(diagnosis.captured_at),
        "issued": _instant(diagnosed_at),
        "result": [_ref(u) for u, _ in resources],
        "conclusion": f"{AI_NOTICE}. {_model_text(diagnosis)}. Suspected by the AI: "
                      f"{', '.join(suspected) or 'none'}. Triage {case.triage_level} "
                      f"({case.triage_label}).",
    }
    if study_uid:
        report["imagingStudy"] = [_ref(urn["study"])]
    entries = [(urn["report"], report), *resources, (urn["patient"], _patient(case)),
               (urn["device"], _device(diagnosis))]
    if study_uid:
        entries.append((urn["study"], _imaging_study(study_uid, diagnosis, urn["patient"])))
    return Bundle.model_validate({
        "resourceType": "Bundle", "id": urn["bundle"].removeprefix("urn:uuid:"),
        "type": "collection", "timestamp": _instant(diagnosed_at),
        "entry": [{"fullUrl": u, "resource": {**r, "id": u.removeprefix("urn:uuid:")}}
                  for u, r in entries],
    })


def case_bundle(session: Session, case: Case) -> Bundle:
    """The bundle of ``case``'s newest diagnosis.

    Raises:
        NotFound: the case has no diagnosis whole enough (retention).
    """
    row = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case.id)
                       .order_by(col(CaseDiagnosis.id).desc())).first()
    if row is None:
        raise NotFound(f"no diagnosis of case {case.id}")
    diagnosis = dicom_results.diagnosis_of(row)
    bundle = build_bundle(case, diagnosis, row.message_id, row.received_at,
                          dicom_results.study_uid(session, case, diagnosis))
    logger.info("FHIR bundle built", extra={"case_id": case.id,
                                            "entries": len(bundle.entry or [])})
    return bundle
