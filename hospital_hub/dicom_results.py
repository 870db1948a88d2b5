"""A case's AI result as DICOM, for the accepting ER's PACS and viewers.

Two instances are made with highdicom from the source X-ray and its
:class:`~shared.messages.DiagnosisV1`:

* a **Comprehensive 3D SR** following TID 1500 (Measurement Report): one
  measurement group per NIH finding with the model's probability and operating
  threshold (numeric measurements) and Present/Absent at that threshold (a
  qualitative evaluation), one planar ROI group per AI box (a closed POLYLINE
  SCOORD on the source image), and a "Qualitative Evaluations" container with
  the text :data:`~shared.notice.AI_NOTICE` (:mod:`hospital_hub.dicom_sr`);
* a **Secondary Capture** (RGB) of the heat map of the top finding, with
  the notice burnt into the pixels and in Image Comments (:mod:`hospital_hub.dicom_sc`).

Both go into the source image's study, reference the source image
(evidence / Source Image Sequence), are ``VerificationFlag`` UNVERIFIED
(the SR) and name the model (name, version, sha256) in the Contributing
Equipment Sequence. Codes: SNOMED CT (``SCT``) where a code exists for the
finding, DICOM (``DCM``) and LOINC (``LN``), and this project's private
coding scheme :data:`~hospital_hub.dicom_codes.PRIVATE_SCHEME` (``99GOLDENHOUR``,
declared in the SR's Coding Scheme Identification Sequence) for the rest
(:mod:`hospital_hub.dicom_codes`); the table is in docs/hospital-formats.md.
What both share (the reference header, the equipment, the dates, the bytes)
is in :mod:`hospital_hub.dicom_common`.

When the ambulance sent a PNG or JPEG rather than DICOM,
:func:`~hospital_hub.dicom_source.source_image` first wraps it in a minimal
Secondary Capture source instance with a Study, Series and SOP Instance UID of
its own, so that the SR and the heat map still reference a real instance (which
is pushed to the PACS with them).

Every UID is derived from the case, the image digest and the diagnosis
(:func:`~hospital_hub.dicom_codes.stable_uid`), and every date from the capture
and diagnosis times, so the same case always gives the same bytes: a retried
push re-sends the same SOP Instance UIDs, and a download matches what the PACS
holds. This module makes them for a case in the database (:func:`case_instances`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlmodel import Session, col, select

from hospital_hub.dicom_codes import stable_uid
from hospital_hub.dicom_common import to_bytes
from hospital_hub.dicom_sc import build_sc
from hospital_hub.dicom_source import source_image
from hospital_hub.dicom_sr import build_sr
from hospital_hub.models import Case, CaseDiagnosis, CaseImage
from shared.errors import NotFound
from shared.messages import DiagnosisV1

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomInstance:
    """One instance ready to store: its SOP class and instance UIDs and bytes."""

    what: str
    """``image``, ``sr`` or ``sc``."""
    sop_class_uid: str
    sop_instance_uid: str
    data: bytes


@dataclass(frozen=True)
class CaseInputs:
    """What a case's DICOM results are made from."""

    case: Case
    diagnosis: DiagnosisV1
    diagnosis_key: str
    """The diagnosis message id: keys the UIDs of the SR and the SC."""
    diagnosed_at: datetime
    image_data: bytes
    media_type: str
    image_sha256: str


def diagnosis_of(row: CaseDiagnosis) -> DiagnosisV1:
    """The stored diagnosis payload as a message (bytes come back from base64).

    Raises:
        NotFound: the payload is no longer whole (retention removed parts).
    """
    try:
        return DiagnosisV1.model_validate_json(json.dumps(row.payload))
    except ValidationError as exc:
        raise NotFound(f"diagnosis {row.id} of case {row.case_id} is no longer complete") from exc


def case_inputs(session: Session, case: Case) -> CaseInputs:
    """The newest diagnosis of ``case`` whose full image has arrived, with that image.

    Raises:
        NotFound: no diagnosis has its verified full image (yet, or any more).
    """
    images = {i.image_sha256: i for i in session.exec(
        select(CaseImage).where(CaseImage.case_id == case.id, col(CaseImage.complete))).all()
        if i.data}
    rows = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case.id)
                        .order_by(col(CaseDiagnosis.id).desc())).all()
    for row in rows:
        sha = (row.payload.get("image") or {}).get("sha256")
        image = images.get(sha) if isinstance(sha, str) else None
        if image is not None and image.data:
            return CaseInputs(case=case, diagnosis=diagnosis_of(row), diagnosis_key=row.message_id,
                              diagnosed_at=row.received_at, image_data=image.data,
                              media_type=image.media_type, image_sha256=image.image_sha256)
    raise NotFound(f"no full image of case {case.id} for its diagnosis yet")


def build_instances(inputs: CaseInputs,
                    kinds: Collection[str] = ("image", "sr", "sc")) -> dict[str, DicomInstance]:
    """Those of ``kinds`` that can be made: the source image (as pushed), the
    SR and, when the diagnosis has a heat map, the SC.

    Raises:
        DicomExportError: the image or the heat map cannot be used.
    """
    source = source_image(inputs.image_data, inputs.media_type, inputs.case,
                          inputs.image_sha256, inputs.diagnosis.captured_at)
    out = {}
    if "image" in kinds:
        out["image"] = DicomInstance("image", str(source.dataset.SOPClassUID),
                                     str(source.dataset.SOPInstanceUID), source.data)
    if "sr" in kinds:
        sr = build_sr(source.dataset, inputs.diagnosis, inputs.diagnosis_key, inputs.diagnosed_at)
        out["sr"] = DicomInstance("sr", str(sr.SOPClassUID), str(sr.SOPInstanceUID), to_bytes(sr))
    sc = (build_sc(source.dataset, inputs.diagnosis, inputs.diagnosis_key, inputs.diagnosed_at)
          if "sc" in kinds else None)
    if sc is not None:
        out["sc"] = DicomInstance("sc", str(sc.SOPClassUID), str(sc.SOPInstanceUID), to_bytes(sc))
    logger.info("DICOM results built", extra={"case_id": inputs.case.id,
                                              "instances": sorted(out),
                                              "wrapped_source": source.wrapped})
    return out


def case_instances(session: Session, case: Case,
                   kinds: Collection[str] = ("image", "sr", "sc")) -> dict[str, DicomInstance]:
    """:func:`build_instances` for ``case``'s newest diagnosis with its image.

    Raises:
        NotFound: no full image for a diagnosis yet.
        DicomExportError: the image or the heat map cannot be used.
    """
    return build_instances(case_inputs(session, case), kinds)


def study_uid(session: Session, case: Case, diagnosis: DiagnosisV1) -> str | None:
    """The Study Instance UID that the case's results are filed under, when
    known: the DICOM's own (once its full image is in), or the one given to a
    converted PNG/JPEG (known at once)."""
    sha = diagnosis.image.sha256
    if diagnosis.image.format != "dicom":
        return stable_uid(case.id, sha, "study")
    image = session.exec(select(CaseImage).where(
        CaseImage.case_id == case.id, CaseImage.image_sha256 == sha, col(CaseImage.complete))).first()
    if image is None or not image.data:
        return None
    try:
        uid = dcmread(io.BytesIO(image.data), stop_before_pixels=True).get("StudyInstanceUID")
    except (InvalidDicomError, ValueError, EOFError, OSError):
        return None
    return str(uid) if uid else None
