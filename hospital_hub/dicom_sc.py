"""The heat map of the top finding as an RGB Secondary Capture in the source's
study, with :data:`~shared.notice.AI_NOTICE` burnt into the pixels and in
Image Comments."""

from __future__ import annotations

import io
from datetime import datetime

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from hospital_hub.dicom_codes import HEATMAP_PURPOSE, MANUFACTURER, PATIENT_ORIENTATION, stable_uid
from hospital_hub.dicom_common import equipment, fix_times, model_text, reference_header
from shared.errors import DicomExportError
from shared.findings import Finding
from shared.messages import DiagnosisV1
from shared.notice import AI_NOTICE


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
    header = reference_header(source)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", patient_orientation=PATIENT_ORIENTATION,
        series_instance_uid=stable_uid(key, "sc-series"), series_number=902,
        sop_instance_uid=stable_uid(key, "sc"), instance_number=1, manufacturer=MANUFACTURER,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=[equipment(diagnosis, when)],
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
                                f"chest X-ray by {model_text(diagnosis)}.")
    sc.ImageComments = f"{AI_NOTICE}. Heat map of {finding}: where the model looked, not a diagnosis."
    fix_times(sc, when)
    return sc
