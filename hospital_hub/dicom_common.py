"""What every DICOM instance made here shares: the header that references the
source image, the model as contributing equipment, reproducible dates and the
Part 10 bytes."""

from __future__ import annotations

import io
from datetime import datetime

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes

from hospital_hub.dicom_codes import MANUFACTURER
from shared.messages import DiagnosisV1
from shared.notice import AI_NOTICE


def to_bytes(dataset: Dataset) -> bytes:
    """``dataset`` as a DICOM Part 10 file."""
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
          "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def reference_header(source: Dataset) -> Dataset:
    """The source's attributes without pixels, with the Type 2 patient and study
    attributes present (empty when unknown), as highdicom copies them."""
    header = Dataset()
    for element in source:
        if element.tag != 0x7FE00010:
            header.add(element)
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    if hasattr(source, "file_meta"):
        header.file_meta = source.file_meta
    return header


def fix_times(dataset: Dataset, when: datetime) -> None:
    """Replace the "now" that highdicom writes with ``when`` (reproducible bytes)."""
    for date_kw, time_kw in (("InstanceCreationDate", "InstanceCreationTime"),
                             ("ContentDate", "ContentTime"),
                             ("DateOfSecondaryCapture", "TimeOfSecondaryCapture")):
        if date_kw in dataset:
            setattr(dataset, date_kw, when.strftime("%Y%m%d"))
            setattr(dataset, time_kw, when.strftime("%H%M%S.%f"))
    for item in dataset.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S.%f")


def model_text(diagnosis: DiagnosisV1) -> str:
    """The model that made ``diagnosis``, in words (name, version, sha256)."""
    model = diagnosis.model
    text = f"AI model {model.name} {model.version}"
    text += f" (sha256 {model.sha256})" if model.sha256 else " (no sha256)"
    if model.placeholder:
        text += ", a placeholder, not a trained model"
    return text


def equipment(diagnosis: DiagnosisV1, when: datetime) -> hd.ContributingEquipment:
    """The model as the Contributing Equipment of an instance made at ``when``."""
    model = diagnosis.model
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER, purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=model.name, software_versions=model.version,
        device_serial_number=model.sha256, contribution_datetime=when,
        contribution_description=f"{model_text(diagnosis)}. {AI_NOTICE}.")
