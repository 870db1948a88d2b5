"""The AI result as DICOM: a TID 1500 Comprehensive 3D SR and a Secondary
Capture heat map, written to bytes and read back with pydicom (and highdicom),
and checked by dciodvfy (skipped without it, failed when GOLDENHOUR_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

from hospital_hub import dicom_results as dr
from hospital_hub.dicom_codes import FINDING_CODES, PRIVATE_SCHEME, stable_uid
from hospital_hub.dicom_source import source_image
from hospital_hub.models import Case
from shared.errors import DicomExportError
from shared.findings import FINDINGS
from shared.messages import DiagnosisV1
from shared.notice import AI_NOTICE
from tests import samples
from tests.hospital_formats import COLUMNS, MODEL_SHA, ROWS, diagnosis, dicom_xray, png_xray
from tests.services import require

WHEN = datetime(2026, 11, 25, 12, 1, 30, tzinfo=UTC)
KEY = "7d1c2a8e-0000-4000-8000-000000000001"


def _case(**changes: Any) -> Case:
    return Case(id=samples.CASE_ID, ambulance_id="amb-1", triage_level=1, triage_label="resuscitation",
                lat=42.35, lon=-71.06, model_name="chest-effnetlite0 1.1.0", captured_at=samples.T0,
                patient_name="Doe^Jane", patient_sex="F", **changes)


def _inputs(image: bytes, media_type: str, fmt: str, heat_maps: bool = True) -> dr.CaseInputs:
    return dr.CaseInputs(case=_case(), diagnosis=diagnosis(image, fmt, heat_maps), diagnosis_key=KEY,
                         diagnosed_at=WHEN, image_data=image, media_type=media_type,
                         image_sha256=diagnosis(image, fmt).image.sha256)


def _read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def _items(sequence: Any) -> list[Dataset]:
    """Every content item under ``sequence``, depth first."""
    found = []
    for item in sequence or []:
        found.append(item)
        found += _items(item.get("ContentSequence"))
    return found


def _name(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return code.CodeValue, code.CodingSchemeDesignator


def _groups(sr: Dataset) -> list[Dataset]:
    measurements = next(i for i in sr.ContentSequence if _name(i) == ("126010", "DCM"))
    return list(measurements.ContentSequence)


def _sha_in_equipment(ds: Dataset) -> Dataset:
    return next(e for e in ds.ContributingEquipmentSequence if e.get("DeviceSerialNumber") == MODEL_SHA)


@pytest.fixture(scope="module")
def dicom_results() -> tuple[DiagnosisV1, Dataset, dict[str, dr.DicomInstance]]:
    image = dicom_xray()
    inputs = _inputs(image, "application/dicom", "dicom")
    return inputs.diagnosis, _read(image), dr.build_instances(inputs)


def test_sr_reports_every_finding_with_probability_threshold_and_presence(dicom_results) -> None:  # type: ignore[no-untyped-def]
    diagnosis, source, instances = dicom_results
    sr = _read(instances["sr"].data)
    assert sr.SOPClassUID == Comprehensive3DSRStorage
    assert instances["sr"].sop_instance_uid == sr.SOPInstanceUID
    assert sr.VerificationFlag == "UNVERIFIED" and sr.PreliminaryFlag == "PRELIMINARY"
    assert sr.Modality == "SR" and AI_NOTICE in sr.SeriesDescription
    title = sr.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("126000", "DCM")  # TID 1500
    assert [t.TemplateIdentifier for t in sr.ContentTemplateSequence] == ["1500"]
    procedure = next(i for i in sr.ContentSequence if _name(i) == ("121058", "DCM"))
    assert procedure.ConceptCodeSequence[0].CodeValue == "36554-4"

    findings = [g for g in _groups(sr) if g.ContentTemplateSequence[0].TemplateIdentifier == "1501"]
    assert len(findings) == len(FINDINGS)
    for group, score in zip(findings, diagnosis.findings, strict=True):
        code = FINDING_CODES[score.finding]
        items = list(group.ContentSequence)
        finding = next(i for i in items if _name(i) == ("121071", "DCM"))
        assert finding.ConceptCodeSequence[0].CodeValue == code.value
        numbers = {_name(i)[0]: float(i.MeasuredValueSequence[0].NumericValue)
                   for i in items if i.ValueType == "NUM"}
        assert numbers == {"122157": pytest.approx(score.probability),
                           "OP_THRESHOLD": pytest.approx(score.threshold),
                           "OP_SENSITIVITY": pytest.approx(score.sensitivity),
                           "OP_SPECIFICITY": pytest.approx(score.specificity)}
        presence = next(i for i in items if i.ValueType == "CODE" and _name(i)[0] == code.value)
        assert presence.ConceptCodeSequence[0].CodeMeaning == ("Present" if score.suspected else "Absent")
        source_ref = next(i for i in items if i.ValueType == "IMAGE").ReferencedSOPSequence[0]
        assert source_ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        algorithm = {_name(i)[0]: i.TextValue for i in items if i.ValueType == "TEXT"}
        assert algorithm["111001"] == "chest-effnetlite0" and algorithm["111003"] == "1.1.0"
        assert algorithm["111002"] == f"sha256={MODEL_SHA}"
    assert sum(1 for s in diagnosis.findings if s.suspected) == sum(
        1 for g in findings for i in g.ContentSequence
        if i.ValueType == "CODE" and i.ConceptCodeSequence[0].CodeMeaning == "Present")


def test_sr_boxes_are_scoords_on_the_source_image(dicom_results) -> None:  # type: ignore[no-untyped-def]
    diagnosis, source, instances = dicom_results
    sr = _read(instances["sr"].data)
    rois = [g for g in _groups(sr) if g.ContentTemplateSequence[0].TemplateIdentifier == "1410"]
    assert len(rois) == len(diagnosis.regions) == 2
    for group, region in zip(rois, diagnosis.regions, strict=True):
        scoord = next(i for i in group.ContentSequence if i.ValueType == "SCOORD")
        assert scoord.GraphicType == "POLYLINE"
        points = np.array(scoord.GraphicData, dtype=float).reshape(-1, 2)
        x1, y1, x2, y2 = (region.x1 * COLUMNS, region.y1 * ROWS, region.x2 * COLUMNS, region.y2 * ROWS)
        np.testing.assert_allclose(points, [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], atol=1e-3)
        selected = scoord.ContentSequence[0].ReferencedSOPSequence[0]
        assert selected.ReferencedSOPInstanceUID == source.SOPInstanceUID
        method = next(i for i in group.ContentSequence if _name(i) == ("370129005", "SCT"))
        assert method.ConceptCodeSequence[0].CodeValue == {"heatmap": "CAM", "detector": "DETECTOR"}[
            region.source or ""]
        score = next(i for i in group.ContentSequence if _name(i) == ("REGION_SCORE", PRIVATE_SCHEME))
        assert float(score.MeasuredValueSequence[0].NumericValue) == pytest.approx(region.score)
    # highdicom reads its own document back, boxes and all
    parsed = hd.sr.Comprehensive3DSR.from_dataset(sr)
    planar = parsed.content.get_planar_roi_measurement_groups()
    assert [g.roi.GraphicType for g in planar] == ["POLYLINE", "POLYLINE"]


def test_sr_references_source_names_model_and_carries_the_notice(dicom_results) -> None:  # type: ignore[no-untyped-def]
    _, source, instances = dicom_results
    sr = _read(instances["sr"].data)
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert (sr.PatientName, sr.PatientID) == (source.PatientName, source.PatientID)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    equipment = _sha_in_equipment(sr)
    assert (equipment.Manufacturer, equipment.ManufacturerModelName, equipment.SoftwareVersions) == (
        "goldenhour", "chest-effnetlite0", "1.1.0")
    assert MODEL_SHA in equipment.ContributionDescription
    assert AI_NOTICE in equipment.ContributionDescription
    texts = [i.TextValue for i in _items(sr.ContentSequence) if i.ValueType == "TEXT"]
    assert AI_NOTICE in texts
    schemes = [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence]
    assert schemes == [PRIVATE_SCHEME]


def test_sc_is_the_top_heat_map_in_the_source_study(dicom_results) -> None:  # type: ignore[no-untyped-def]
    diagnosis, source, instances = dicom_results
    sc = _read(instances["sc"].data)
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.SeriesInstanceUID != source.SeriesInstanceUID
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == ("RGB", 3, 8)
    reference = sc.SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert sc.BurnedInAnnotation == "YES" and AI_NOTICE in sc.ImageComments
    assert AI_NOTICE in sc.SeriesDescription and str(diagnosis.top3[0]) in sc.DerivationDescription
    assert MODEL_SHA in _sha_in_equipment(sc).ContributionDescription
    overlay = np.asarray(Image.open(io.BytesIO(diagnosis.overlays[0].jpeg)).convert("RGB"))
    pixels = sc.pixel_array
    band = pixels.shape[0] - overlay.shape[0]
    assert band > 0 and pixels.shape[1:] == overlay.shape[1:]
    np.testing.assert_array_equal(pixels[band:], overlay)  # the heat map, under the notice band
    assert pixels[:band].max() > 200 and np.median(pixels[:band]) == 0  # white text, black band


def test_png_is_wrapped_in_a_source_instance_of_its_own() -> None:
    for bits in (8, 16):
        image = png_xray(bits)
        instances = dr.build_instances(_inputs(image, "image/png", "png"))
        source = _read(instances["image"].data)
        assert source.SOPClassUID == SecondaryCaptureImageStorage and source.BitsAllocated == bits
        assert source.PatientID == samples.CASE_ID and source.PatientName == "Doe^Jane"
        with Image.open(io.BytesIO(image)) as png:
            np.testing.assert_array_equal(source.pixel_array, np.asarray(png))
        sr = _read(instances["sr"].data)
        assert sr.StudyInstanceUID == source.StudyInstanceUID
        ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert source.StudyInstanceUID == stable_uid(samples.CASE_ID, diagnosis(image, "png").image.sha256,
                                                         "study")


def test_same_case_gives_the_same_bytes_and_uids() -> None:
    for image, media, fmt in ((dicom_xray(), "application/dicom", "dicom"), (png_xray(), "image/png", "png")):
        first = dr.build_instances(_inputs(image, media, fmt))
        again = dr.build_instances(_inputs(image, media, fmt))
        assert first == again
        assert len({i.sop_instance_uid for i in first.values()}) == 3


def test_no_heat_map_no_sc_and_broken_inputs_are_refused() -> None:
    image = dicom_xray()
    assert set(dr.build_instances(_inputs(image, "application/dicom", "dicom", heat_maps=False))) == {
        "image", "sr"}
    source = _read(image)
    del source.SOPInstanceUID
    out = io.BytesIO()
    source.save_as(out)
    with pytest.raises(DicomExportError, match="SOPInstanceUID"):
        source_image(out.getvalue(), "application/dicom", _case(), "ab" * 32, samples.T0)
    with pytest.raises(DicomExportError):
        source_image(b"not an image", "image/png", _case(), "ab" * 32, samples.T0)


def test_dciodvfy_finds_no_errors(tmp_path: Path) -> None:
    require(shutil.which("dciodvfy") is not None,
            "dciodvfy is not installed (apt-get install dicom3tools; deploy/bootstrap.sh test)")
    for image, media, fmt in ((dicom_xray(), "application/dicom", "dicom"), (png_xray(), "image/png", "png")):
        for what, instance in dr.build_instances(_inputs(image, media, fmt)).items():
            if what == "image" and fmt == "dicom":
                continue  # the test's own minimal DX, not ours
            path = tmp_path / f"{fmt}-{what}.dcm"
            path.write_bytes(instance.data)
            result = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True,
                                    timeout=60, check=False)
            report = result.stdout + result.stderr
            errors = [line for line in report.splitlines() if line.startswith("Error")]
            assert not errors, f"{fmt} {what}:\n{report}"
            assert ("Comprehensive3DSR" if what == "sr" else "SCImage") in report
