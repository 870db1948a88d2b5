"""Synthetic inputs for the DICOM, PACS and FHIR tests: a small DX image as
DICOM and as PNG (not X-rays), and the sample diagnosis with a real model
sha256, boxes from both sources and a heat map JPEG for each top-3 finding."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from shared.findings import Finding
from shared.messages import DiagnosisV1, ImageInfo, ModelInfo, Overlay, Region
from tests import samples

MODEL_SHA = "5e" * 32
ROWS, COLUMNS = 64, 80


def dicom_xray(patient_name: str = "Doe^Jane") -> bytes:
    """A 64 x 80 MONOCHROME2 Digital X-Ray image (For Presentation) with its UIDs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientSex = patient_name, "P-123", "F"
    ds.Modality, ds.PhotometricInterpretation = "DX", "MONOCHROME2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = ROWS, COLUMNS, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.tile(np.linspace(0, 4000, COLUMNS).astype(np.uint16), (ROWS, 1)).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def png_xray(bits: int = 8) -> bytes:
    """A 64 x 80 grey gradient as an 8- or 16-bit PNG."""
    ramp = np.tile(np.linspace(0, 1, COLUMNS), (ROWS, 1))
    pixels = (ramp * (65535 if bits == 16 else 255)).astype(np.uint16 if bits == 16 else np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def heat_jpeg(colour: tuple[int, int, int] = (200, 40, 30)) -> bytes:
    """A 48 x 40 RGB JPEG standing in for a blended heat map."""
    pixels = np.zeros((48, 40, 3), np.uint8)
    pixels[:, :] = (60, 60, 60)
    pixels[10:30, 8:28] = colour
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def diagnosis(image: bytes, image_format: str = "dicom", heat_maps: bool = True,
              ambulance_id: str = "amb-1") -> DiagnosisV1:
    """The sample diagnosis (pneumothorax positive) of ``image``, from a model with a sha256."""
    base = samples.diagnosis(ambulance_id=ambulance_id)
    overlays = [Overlay(finding=f, jpeg=heat_jpeg(), peak_x=0.3, peak_y=0.4)
                for f in base.top3] if heat_maps else None
    return DiagnosisV1.model_validate({
        **base.model_dump(),
        "image": ImageInfo(source=f"xray.{image_format}", format=image_format,  # type: ignore[arg-type]
                           width=COLUMNS, height=ROWS, sha256=hashlib.sha256(image).hexdigest(),
                           thumbnail_jpeg=base.image.thumbnail_jpeg),
        "model": ModelInfo(name="chest-effnetlite0", version="1.1.0", sha256=MODEL_SHA),
        "regions": [
            Region(finding=Finding.PNEUMOTHORAX, x1=0.1, y1=0.25, x2=0.5, y2=0.75, score=0.7,
                   source="heatmap"),
            Region(finding=Finding.PNEUMONIA, x1=0.55, y1=0.5, x2=0.85, y2=0.75, score=0.65,
                   source="detector"),
        ],
        "overlays": overlays,
        # a model with operating points: each finding with what its point measured
        "findings": [s.model_copy(update={"sensitivity": round(0.4 + 0.02 * i, 2), "specificity": 0.9})
                     for i, s in enumerate(base.findings)],
    })
