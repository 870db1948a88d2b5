"""The AI result as a Comprehensive 3D SR following TID 1500 (Measurement
Report): one measurement group per NIH finding with the model's probability and
operating threshold and Present/Absent at that threshold, one planar ROI group
per AI box (a closed POLYLINE SCOORD on the source image), and a "Qualitative
Evaluations" container with the text :data:`~shared.notice.AI_NOTICE`."""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from hospital_hub.dicom_codes import (
    ABSENT,
    CHEST_XRAY,
    DETECTOR_METHOD,
    FINDING_CODES,
    HEATMAP_METHOD,
    MANUFACTURER,
    NOTICE,
    OPERATING_SENSITIVITY,
    OPERATING_SPECIFICITY,
    OPERATING_THRESHOLD,
    PRESENT,
    PRIVATE_SCHEME,
    PROBABILITY,
    QUALITATIVE_EVALUATIONS,
    REGION_SCORE,
    UNITLESS,
    stable_uid,
)
from hospital_hub.dicom_common import equipment, fix_times, reference_header
from shared.messages import DiagnosisV1, Region
from shared.notice import AI_NOTICE


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
    header = reference_header(source)
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
        contributing_equipment=[equipment(diagnosis, when)],
        series_description=f"AI findings - {AI_NOTICE}",
        content_date=when.date(), content_time=when.time(),
    )
    sr.CodingSchemeIdentificationSequence = _coding_schemes()
    fix_times(sr, when)
    return sr
