"""A case's AI result as DICOM, for the accepting ER's PACS and viewers.

Two instances are made with highdicom from the source X-ray and its
:class:`~shared.messages.DiagnosisV1`:

* a **Comprehensive 3D SR** following TID 1500 (Measurement Report): one
  measurement group per NIH finding with the model's probability and operating
  threshold (numeric measurements) and Present/Absent at that threshold (a
  qualitative evaluation), one planar ROI group per AI box (a closed POLYLINE
  SCOORD on the source image), and a "Qualitative Evaluations" container with
  the text :data:`AI_NOTICE`;
* a **Secondary Capture** (RGB) of the heat map of the top finding, with
  :data:`AI_NOTICE` burnt into the pixels and in Image Comments.

Both go into the source image's study, reference the source image
(evidence / Source Image Sequence), are ``VerificationFlag`` UNVERIFIED
(the SR) and name the model (name, version, sha256) in the Contributing
Equipment Sequence. Codes: SNOMED CT (``SCT``) where a code exists for the
finding, DICOM (``DCM``) and LOINC (``LN``), and this project's private
coding scheme :data:`PRIVATE_SCHEME` (``99GOLDENHOUR``, declared in the SR's
Coding Scheme Identification Sequence) for the rest; the table is in
docs/hospital-formats.md.

When the ambulance sent a PNG or JPEG rather than DICOM, :func:`source_image`
first wraps it in a minimal Secondary Capture source instance with a Study,
Series and SOP Instance UID of its own, so that the SR and the heat map still
reference a real instance (which is pushed to the PACS with them).

Every UID is derived from the case, the image digest and the diagnosis
(:func:`stable_uid`), and every date from the capture and diagnosis times, so
the same case always gives the same bytes: a retried push re-sends the same
SOP Instance UIDs, and a download matches what the PACS holds.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from pydantic import ValidationError
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian
from sqlmodel import Session, col, select

from hospital_hub.models import Case, CaseDiagnosis, CaseImage
from shared.errors import DicomExportError, NotFound
from shared.findings import Finding
from shared.messages import DiagnosisV1, Region
from shared.notice import AI_NOTICE

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class SourceImage:
    """The instance the results reference: the ambulance's DICOM as sent, or a
    Secondary Capture wrapping its PNG/JPEG (``wrapped``)."""

    dataset: Dataset
    data: bytes
    """Part 10 bytes, as pushed to the PACS."""
    wrapped: bool


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


def to_bytes(dataset: Dataset) -> bytes:
    """``dataset`` as a DICOM Part 10 file."""
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


# -- the source image ---------------------------------------------------------------
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
          "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
             "Rows", "Columns")


def _reference_header(source: Dataset) -> Dataset:
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
    _fix_times(sc, captured_at)
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


# -- the results -------------------------------------------------------------------------
def _fix_times(dataset: Dataset, when: datetime) -> None:
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


def _model_text(diagnosis: DiagnosisV1) -> str:
    model = diagnosis.model
    text = f"AI model {model.name} {model.version}"
    text += f" (sha256 {model.sha256})" if model.sha256 else " (no sha256)"
    if model.placeholder:
        text += ", a placeholder, not a trained model"
    return text


def _equipment(diagnosis: DiagnosisV1, when: datetime) -> hd.ContributingEquipment:
    model = diagnosis.model
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER, purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=model.name, software_versions=model.version,
        device_serial_number=model.sha256, contribution_datetime=when,
        contribution_description=f"{_model_text(diagnosis)}. {AI_NOTICE}.")


def _algorithm(diagnosis: DiagnosisV1) -> hd.sr.AlgorithmIdentification:
    model = diagnosis.model
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, manufacturer=MANUFACTURER,
        parameters=[f"sha256={model.sha256}"] if model.sha256 else None)


def _polyline(region: Region, columns: int, rows: int) -> np.ndarray:
    """The box as a closed POLYLINE in image pixel coordinates (column, row)."""
    x1, x2 = region.x1 * columns, region.x2 * columns
    y1, y2 = region.y1 * rows, region.y2 * rows
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float32)


def _finding_groups(diagnosis: DiagnosisV1, header: Dataset, key: str,
                    algorithm: hd.sr.AlgorithmIdentification
                    ) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    source = hd.sr.SourceImageForMeasurementGroup.from_source_image(header)
    groups = []
    for score in diagnosis.findings:
        code = FINDING_CODES[score.finding]
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=stable_uid(key, "finding", str(score.finding)),
                identifier=f"AI {score.finding}"),
            finding_type=code, algorithm_id=algorithm, source_images=[source],
            measurements=[
                hd.sr.Measurement(name=PROBABILITY, value=round(score.probability, 6),
                                  unit=UNITLESS),
                hd.sr.Measurement(name=OPERATING_THRESHOLD, value=round(score.threshold, 6),
                                  unit=UNITLESS),
                *[hd.sr.Measurement(name=name, value=round(value, 6), unit=UNITLESS)
                  for name, value in ((OPERATING_SENSITIVITY, score.sensitivity),
                                      (OPERATING_SPECIFICITY, score.specificity)) if value is not None],
            ],
            # "present" here means suspected by the AI at its operating point; the SR is unverified
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                name=code, value=PRESENT if score.suspected else ABSENT)],
        ))
    return groups


def _region_groups(diagnosis: DiagnosisV1, header: Dataset, key: str,
                   algorithm: hd.sr.AlgorithmIdentification
                   ) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    source = hd.sr.SourceImageForRegion.from_source_image(header)
    groups = []
    for number, region in enumerate(diagnosis.regions, start=1):
        method = {"heatmap": HEATMAP_METHOD, "detector": DETECTOR_METHOD}.get(region.source or "")
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=stable_uid(key, "region", str(number)),
                identifier=f"AI region {number}: {region.finding}"),
            referenced_region=hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=_polyline(region, int(header.Columns), int(header.Rows)),
                source_image=source),
            finding_type=FINDING_CODES[region.finding], method=method, algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=REGION_SCORE, value=round(region.score, 6),
                                            unit=UNITLESS)],
        ))
    return groups


def _library(header: Dataset) -> list[Dataset] | None:
    """The Image Library entry of the source, left out (it is optional in TID
    1500) for a projection radiograph without the Patient Orientation and
    Imager Pixel Spacing that its descriptors (TID 1603) need."""
    projection = header.get("Modality") in ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")
    if projection and not (header.get("PatientOrientation") and header.get("ImagerPixelSpacing")):
        return None
    return [header]


def _notice_container() -> hd.sr.ContainerContentItem:
    """TID 1500's "Qualitative Evaluations" container with the notice as TEXT."""
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([hd.sr.TextContentItem(
        name=NOTICE, value=AI_NOTICE, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)])
    return container


def _coding_schemes() -> list[Dataset]:
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "goldenhour private codes"
    item.CodingSchemeResponsibleOrganization = "goldenhour project (docs/hospital-formats.md)"
    return [item]


def build_sr(source: Dataset, diagnosis: DiagnosisV1, key: str,
             when: datetime) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 Measurement Report of ``diagnosis`` on ``source``.

    ``key`` (the diagnosis message id) keys the UIDs; ``when`` (when the hub
    received the diagnosis) dates the document.
    """
    header = _reference_header(source)
    algorithm = _algorithm(diagnosis)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=stable_uid("model", diagnosis.model.name, diagnosis.model.version,
                           diagnosis.model.sha256 or ""),
            name=diagnosis.model.name, manufacturer_name=MANUFACTURER,
            model_name=f"{diagnosis.model.name} {diagnosis.model.version}"[:64],
            serial_number=diagnosis.model.sha256))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_XRAY,
        imaging_measurements=[*_finding_groups(diagnosis, header, key, algorithm),
                              *_region_groups(diagnosis, header, key, algorithm)],
        referenced_images=_library(header),
    )
    report[0].ContentSequence.append(_notice_container())
    sr = hd.sr.Comprehensive3DSR(
        evidence=[header], content=report[0],
        series_instance_uid=stable_uid(key, "sr-series"), series_number=901,
        sop_instance_uid=stable_uid(key, "sr"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        contributing_equipment=[_equipment(diagnosis, when)],
        series_description=f"AI findings - {AI_NOTICE}",
        content_date=when.date(), content_time=when.time(),
    )
    sr.CodingSchemeIdentificationSequence = _coding_schemes()
    _fix_times(sr, when)
    return sr


def _top_overlay(diagnosis: DiagnosisV1) -> tuple[Finding, bytes] | None:
    overlays = diagnosis.overlays or []
    for finding in diagnosis.top3[:1]:
        for overlay in overlays:
            if overlay.finding == finding:
                return overlay.finding, overlay.jpeg
    return (overlays[0].finding, overlays[0].jpeg) if overlays else None


def _burn_notice(image: Image.Image) -> Image.Image:
    """The heat map under a black band carrying :data:`AI_NOTICE` in white,
    wrapped onto as many lines as the image's width needs."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for word in AI_NOTICE.split():
        if lines and measure.textlength(f"{lines[-1]} {word}", font=font) <= image.width - 4:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    line_height = 13
    band = line_height * len(lines) + 3
    out = Image.new("RGB", (image.width, image.height + band), (0, 0, 0))
    out.paste(image, (0, band))
    draw = ImageDraw.Draw(out)
    for number, line in enumerate(lines):
        draw.text((2, 2 + number * line_height), line, fill=(255, 255, 255), font=font)
    return out


def build_sc(source: Dataset, diagnosis: DiagnosisV1, key: str, when: datetime) -> hd.sc.SCImage | None:
    """The heat map of the top finding as an RGB Secondary Capture in the
    source's study, or None when the diagnosis carries no heat map.

    Raises:
        DicomExportError: the heat map JPEG cannot be decoded.
    """
    top = _top_overlay(diagnosis)
    if top is None:
        return None
    finding, jpeg = top
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            pixels = np.asarray(_burn_notice(image.convert("RGB")), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DicomExportError(f"the heat map of {finding} cannot be decoded: {exc}") from exc
    header = _reference_header(source)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", patient_orientation=PATIENT_ORIENTATION,
        series_instance_uid=stable_uid(key, "sc-series"), series_number=902,
        sop_instance_uid=stable_uid(key, "sc"), instance_number=1, manufacturer=MANUFACTURER,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=[_equipment(diagnosis, when)],
        series_description=f"AI heat map - {AI_NOTICE}",
        content_date=when.date(), content_time=when.time(),
    )
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept.from_code(HEATMAP_PURPOSE)]
    sc.SourceImageSequence = [reference]
    sc.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    sc.BurnedInAnnotation = "YES"
    if "Laterality" not in sc:
        sc.Laterality = None  # Type 2C: the chest is not a paired structure
    sc.DerivationDescription = (f"Class activation heat map of {finding} blended over the "
                                f"chest X-ray by {_model_text(diagnosis)}.")
    sc.ImageComments = f"{AI_NOTICE}. Heat map of {finding}: where the model looked, not a diagnosis."
    _fix_times(sc, when)
    return sc


# -- from a case in the database ----------------------------------------------------------
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
