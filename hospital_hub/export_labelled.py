"""``goldenhour hub export-labelled``: the ER verdicts as training data in
the NIH layout (``labels.csv`` + ``images/``) for ``train classify --extra-labelled``.

Labels per finding come from the ER, not the AI: present = a suspected
finding confirmed, or a finding the ER added as missed; absent = a suspected
finding refuted, or one not suspected and confirmed absent. A finding not
assessed is unknown, and the NIH format has no "unknown": an image with any
unassessed finding is left out unless ``include_partial``, which writes it
with only its present findings and names the unassessed ones in
``Not Assessed`` (training then reads them as absent).

Nothing identifies the patient: the ``Patient ID`` is a keyed hash (HMAC with
the hub's secret key) of the case id, stable while the key is; the image file
name is a keyed hash of the image's sha256; no name, case id or time is written.
One row per verdict's diagnosis (an ER's latest verdict; with several ERs'
verdicts on one diagnosis, the most recent).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.models import Case, CaseDiagnosis, CaseImage
from hospital_hub.preview import PreviewError, render_preview
from hospital_hub.verdict_models import Judgement, Verdict
from shared.errors import GoldenhourError
from shared.findings import FINDINGS, NO_FINDING

logger = logging.getLogger(__name__)

COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
           "Patient Gender", "View Position", "Confirmed", "Refuted", "Added", "Not Assessed",
           "AI Suspected", "Model", "Model Version", "Model SHA256", "Judged By Hospital",
           "Verdict Complete", "source_repo")
SOURCE = "goldenhour-hub"
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg"}


class ExportError(GoldenhourError):
    """The export cannot be written as asked."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote and why it left verdicts out."""

    images: int
    patients: int
    partial_skipped: int
    no_image: int
    unreadable: int


def _keyed(key: bytes, label: str, value: str) -> str:
    return hmac.new(key, f"{label}:{value}".encode(), hashlib.sha256).hexdigest()


def patient_id(key: bytes, case_id: str) -> int:
    """A stable pseudonymous patient id (1 .. 10**9 - 1) for a case."""
    return int(_keyed(key, "patient", case_id)[:15], 16) % (10**9 - 1) + 1


def labels(verdict: Verdict) -> tuple[list[str], list[str], list[str]]:
    """(present, absent, not assessed) findings by the ER, canonical order."""
    present, absent, unknown = [], [], []
    flagged = set(verdict.suspected)
    for finding in (str(f) for f in FINDINGS):
        judgement = verdict.judgements.get(finding, Judgement.NOT_ASSESSED.value)
        if judgement == Judgement.NOT_ASSESSED:
            unknown.append(finding)
        elif (judgement == Judgement.CONFIRMED) == (finding in flagged):
            present.append(finding)
        else:
            absent.append(finding)
    return present, absent, unknown


def _image(session: Session, case_id: str, sha256: str | None) -> CaseImage | None:
    query = select(CaseImage).where(CaseImage.case_id == case_id, col(CaseImage.complete))
    if sha256:
        query = query.where(CaseImage.image_sha256 == sha256)
    return session.exec(query.order_by(col(CaseImage.id).desc())).first()


def _image_bytes(image: CaseImage) -> tuple[bytes, str]:
    """PNG and JPEG as stored; DICOM rendered to an 8-bit PNG (modality and VOI LUTs
    applied, as the case view shows it) because the training reader takes raster images."""
    assert image.data is not None
    if image.media_type in EXTENSIONS:
        return image.data, EXTENSIONS[image.media_type]
    return render_preview(image.data, image.media_type), ".png"


def export_labelled(engine: Engine, key: bytes, since: datetime, out: Path,
                    include_partial: bool = False) -> ExportSummary:
    """Write ``out/labels.csv`` and ``out/images/`` from verdicts given since ``since``.

    Raises:
        ExportError: ``out`` already holds an export (nothing is overwritten).
    """
    target = out / "labels.csv"
    if target.exists():
        raise ExportError(f"{target} exists: export into a new folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, patients = [], set()
    partial = no_image = unreadable = 0
    with Session(engine) as session:
        verdicts = session.exec(select(Verdict).where(col(Verdict.updated_at) >= since)
                                .order_by(col(Verdict.updated_at), col(Verdict.id))).all()
        latest = list({v.diagnosis_id: v for v in verdicts}.values())
        for verdict in latest:
            present, _, unknown = labels(verdict)
            if unknown and not include_partial:
                partial += 1
                continue
            diagnosis = session.get(CaseDiagnosis, verdict.diagnosis_id)
            case = session.get(Case, verdict.case_id)
            sha = (diagnosis.payload.get("image") or {}).get("sha256") if diagnosis else None
            image = _image(session, verdict.case_id, sha)
            if image is None or not image.data or case is None:
                no_image += 1
                continue
            try:
                data, extension = _image_bytes(image)
            except PreviewError as exc:
                logger.warning("image cannot be exported", extra={"error": str(exc)})
                unreadable += 1
                continue
            name = f"gh-{_keyed(key, 'image', image.image_sha256)[:20]}{extension}"
            (out / "images" / name).write_bytes(data)
            pid = patient_id(key, verdict.case_id)
            patients.add(pid)
            rows.append({
                "Image Index": name, "Finding Labels": "|".join(present) or NO_FINDING,
                "Follow-up #": 0, "Patient ID": pid,
                "Patient Age": "" if case.patient_age is None else case.patient_age,
                "Patient Gender": case.patient_sex or "", "View Position": "",
                "Confirmed": "|".join(f for f in present if f in verdict.suspected),
                "Refuted": "|".join(f for f in verdict.suspected
                                    if verdict.judgements.get(f) == Judgement.REFUTED),
                "Added": "|".join(verdict.added), "Not Assessed": "|".join(unknown),
                "AI Suspected": "|".join(verdict.suspected), "Model": verdict.model_name,
                "Model Version": verdict.model_version, "Model SHA256": verdict.model_sha256 or "",
                "Judged By Hospital": verdict.hospital_id or "",
                "Verdict Complete": "no" if unknown else "yes", "source_repo": SOURCE})
    tmp = target.with_suffix(".csv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(target)
    summary = ExportSummary(len(rows), len(patients), partial, no_image, unreadable)
    logger.info("labelled images exported", extra={"out": str(out), **summary.__dict__})
    return summary
