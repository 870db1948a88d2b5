"""The instance that a case's results reference: the ambulance's DICOM as sent,
or, for a PNG or JPEG, a minimal Secondary Capture wrapping it with a Study,
Series and SOP Instance UID of its own (pushed to the PACS with the results)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian

from hospital_hub.dicom_codes import MANUFACTURER, PATIENT_ORIENTATION, stable_uid
from hospital_hub.dicom_common import fix_times, to_bytes
from hospital_hub.models import Case
from shared.errors import DicomExportError

_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
             "Rows", "Columns")


@dataclass(frozen=True)
class SourceImage:
    """The instance the results reference: the ambulance's DICOM as sent, or a
    Secondary Capture wrapping its PNG/JPEG (``wrapped``)."""

    dataset: Dataset
    data: bytes
    """Part 10 bytes, as pushed to the PACS."""
    wrapped: bool


def _dicom_source(data: bytes) -> SourceImage:
    try:
        dataset = dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise DicomExportError(f"the case's DICOM image cannot be read: {exc}") from exc
    missing = [k for k in _REQUIRED if not dataset.get(k)]
    if missing:
        raise DicomExportError(f"the case's DICOM image lacks {', '.join(missing)}")
    return SourceImage(dataset, data, wrapped=False)


def _patient_sex(sex: str | None) -> str | None:
    return {"F": "F", "M": "M", "X": "O"}.get(sex or "")


def _wrapped_source(data: bytes, case: Case, image_sha256: str, captured_at: datetime,
                    kind: str) -> SourceImage:
    """Wrap a PNG/JPEG in a Secondary Capture instance with UIDs of its own."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DicomExportError(f"the case's {kind} image cannot be read: {exc}") from exc
    bits = 16 if pixels.dtype == np.uint16 else 8
    sc = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation="MONOCHROME2", bits_allocated=bits,
        coordinate_system="PATIENT", patient_orientation=PATIENT_ORIENTATION,
        study_instance_uid=stable_uid(case.id, image_sha256, "study"),
        series_instance_uid=stable_uid(case.id, image_sha256, "series"), series_number=1,
        sop_instance_uid=stable_uid(case.id, image_sha256, "image"), instance_number=1,
        manufacturer=MANUFACTURER, patient_id=case.id, patient_name=case.patient_name,
        patient_sex=_patient_sex(case.patient_sex), study_date=captured_at.date(),
        study_time=captured_at.time(), accession_number=None, study_id=None,
        referring_physician_name=None, transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=f"Ambulance chest X-ray (converted from {kind.upper()})",
        content_date=captured_at.date(), content_time=captured_at.time(),
    )
    sc.BodyPartExamined = "CHEST"
    sc.ConversionType = "WSD"
    sc.ImageComments = (f"Converted by goldenhour from the {kind.upper()} sent by ambulance "
                        f"{case.ambulance_id} (sha256 {image_sha256}).")
    fix_times(sc, captured_at)
    return SourceImage(sc, to_bytes(sc), wrapped=True)


def source_image(data: bytes, media_type: str, case: Case, image_sha256: str,
                 captured_at: datetime) -> SourceImage:
    """The DICOM instance that the results reference (see the module docstring).

    Raises:
        DicomExportError: the image cannot be read, or a DICOM lacks its UIDs.
    """
    if media_type == "application/dicom":
        return _dicom_source(data)
    kind = {"image/png": "png", "image/jpeg": "jpeg"}.get(media_type)
    if kind is None:
        raise DicomExportError(f"no DICOM for an image of type {media_type}")
    return _wrapped_source(data, case, image_sha256, captured_at, kind)
