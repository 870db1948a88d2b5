"""The codes and identifiers of the DICOM (and FHIR) results: this project's
private coding scheme, the concept of each NIH finding, the SR's measurement and
method codes, and the UIDs derived from a case (:func:`stable_uid`). The table
is in docs/hospital-formats.md."""

from __future__ import annotations

import uuid

import highdicom as hd
from pydicom.sr.codedict import codes

from shared.findings import Finding

MANUFACTURER = "goldenhour"
PRIVATE_SCHEME = "99GOLDENHOUR"
"""Private coding scheme (PS3.16 8.2: designators starting "99" are local)."""
UID_NAMESPACE = uuid.UUID("6f1c1f5e-5d0b-4f43-9b7e-2b8e6a3c0d11")
"""Namespace of the name-based (version 5) UUIDs behind :func:`stable_uid`."""
PATIENT_ORIENTATION = ("L", "F")
"""A frontal chest radiograph as displayed: rows run to the patient's left,
columns to the feet (assumed for images converted from PNG/JPEG)."""


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning)


def _sct(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, "SCT", meaning)


FINDING_CODES: dict[Finding, hd.sr.CodedConcept] = {
    Finding.ATELECTASIS: _sct("46621007", "Atelectasis"),
    Finding.CARDIOMEGALY: _sct("8186001", "Cardiomegaly"),
    Finding.CONSOLIDATION: _sct("95436008", "Lung consolidation"),
    Finding.EDEMA: _sct("19242006", "Pulmonary edema"),
    Finding.EFFUSION: _sct("60046008", "Pleural effusion"),
    Finding.EMPHYSEMA: _sct("87433001", "Pulmonary emphysema"),
    Finding.FIBROSIS: _sct("112674009", "Fibrosis"),
    Finding.HERNIA: _private("HERNIA", "Hernia (NIH ChestX-ray14 label)"),
    Finding.INFILTRATION: hd.sr.CodedConcept("112121", "DCM", "Infiltrate"),
    Finding.MASS: _sct("4147007", "Mass"),
    Finding.NODULE: _sct("27925004", "Nodule"),
    Finding.PLEURAL_THICKENING: _private("PLEURAL_THICK", "Pleural thickening"),
    Finding.PNEUMONIA: _sct("233604007", "Pneumonia"),
    Finding.PNEUMOTHORAX: _sct("36118008", "Pneumothorax"),
}
"""The concept of each NIH label: SNOMED CT where one fits the label, DICOM's
"Infiltrate" (CID 6102), private codes for the two labels without one."""

PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
OPERATING_THRESHOLD = _private("OP_THRESHOLD", "AI operating threshold")
OPERATING_SENSITIVITY = _private("OP_SENSITIVITY", "Sensitivity measured at the operating point")
OPERATING_SPECIFICITY = _private("OP_SPECIFICITY", "Specificity measured at the operating point")
REGION_SCORE = _private("REGION_SCORE", "AI region score")
NOTICE = _private("AI_NOTICE", "Notice")
HEATMAP_METHOD = _private("CAM", "Class activation map")
DETECTOR_METHOD = _private("DETECTOR", "Object detector")
PRESENT = _sct("52101004", "Present")
ABSENT = _sct("272519000", "Absent")
UNITLESS = hd.sr.CodedConcept("1", "UCUM", "no units")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
CHEST_XRAY = hd.sr.CodedConcept("36554-4", "LN", "XR Chest Single view")
"""LOINC for the procedure: an ambulance radiograph is one (AP) view; 36643-5
is the two-view exam."""
HEATMAP_PURPOSE = codes.DCM.SourceImageForImageProcessingOperation


def stable_uid(*parts: str) -> str:
    """A DICOM UID (``2.25.<decimal UUID>``, PS3.5 B.2) that depends only on ``parts``."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}"
