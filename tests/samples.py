"""Fixed sample payloads for contract tests (values chosen by hand, not a model)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from shared.findings import FINDINGS, Finding
from shared.messages import (
    CapacityV1,
    CaseDecisionV1,
    CaseStatusV1,
    CaseUpdateV1,
    DiagnosisV1,
    DispatchAlertV1,
    Envelope,
    ErDecisionV1,
    FindingScore,
    ImageChunkV1,
    ImageInfo,
    IntakeV1,
    ModelInfo,
    ModelIntake,
    OfferSummary,
    OfferV1,
    Patient,
    Payload,
    Position,
    PositionV1,
    Region,
    StatusV1,
    Triage,
    Vitals,
)

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
CASE_ID = "20261125T120000Z-0badcafe"
VITALS = Vitals(taken_at=T0, spo2_pct=88, resp_rate=28, heart_rate=118, systolic_bp=95,
                temperature_c=37.2, avpu="A", supplemental_o2=True)


def diagnosis(ambulance_id: str = "amb-1", lat: float = 42.35, lon: float = -71.06) -> DiagnosisV1:
    """A diagnosis with a positive pneumothorax."""
    probabilities = [0.05 * (i + 1) for i in range(len(FINDINGS))]
    return DiagnosisV1(
        ambulance_id=ambulance_id,
        captured_at=T0,
        position=Position(lat=lat, lon=lon),
        image=ImageInfo(source="xray.dcm", format="dicom", width=1024, height=1024,
                        sha256="ab" * 32, thumbnail_jpeg=b"\xff\xd8fakejpeg\xff\xd9"),
        model=ModelInfo(name="placeholder-not-a-model", version="0", placeholder=True),
        findings=[FindingScore(finding=f, probability=p, threshold=0.5)
                  for f, p in zip(FINDINGS, probabilities, strict=True)],
        top3=[Finding.PNEUMOTHORAX, Finding.PNEUMONIA, Finding.PLEURAL_THICKENING],
        regions=[Region(finding=Finding.PNEUMOTHORAX, x1=0.1, y1=0.1, x2=0.4, y2=0.5, score=0.7)],
        triage=Triage(level=1, label="immediate", reasons=["AI suggests Pneumothorax"]),
        timings_ms={"decode": 12.5, "classify": 30.0},
        patient=Patient(age_years=63, sex="F", chief_complaint="sudden dyspnoea"),
        vitals=VITALS,
    )


def all_payloads() -> list[Payload]:
    """One sample of every registered payload type."""
    return [
        diagnosis(),
        OfferV1(hospital_id="bos-mgh", ambulance_id="amb-1", state="open", rank=1,
                distance_km=3.2, eta_min=4.5, expires_at=T0, triage_level=1,
                top3=[Finding.PNEUMOTHORAX], summary="Triage 1"),
        ErDecisionV1(hospital_id="bos-mgh", decision="accept", decided_by="Dr A"),
        CaseDecisionV1(status="accepted", hospital_id="bos-mgh", hospital_name="MGH",
                       destination=Position(lat=42.36, lon=-71.07), distance_km=3.2,
                       eta_min=4.5, message="MGH accepts"),
        StatusV1(role="edge", state="online", software_version="0.1.0"),
        PositionV1(position=Position(lat=42.35, lon=-71.06), speed_kmh=40.0, heading_deg=90.0),
        CapacityV1(er_beds_free=3, icu_beds_free=1),
        CaseUpdateV1(ambulance_id="amb-1", action="divert", reason="patient deteriorated"),
        CaseStatusV1(state="offered", message="Offered to 1 ER",
                     offers=[OfferSummary(hospital_id="bos-mgh", hospital_name="MGH",
                                          state="open", eta_min=4.5)]),
        DispatchAlertV1(kind="no_er_available", ambulance_id="amb-1", triage_level=1,
                        message="No ER accepted case"),
        ImageChunkV1(ambulance_id="amb-1", image_sha256="cd" * 32, media_type="application/dicom",
                     total_bytes=10, index=0, count=1,
                     sha256=hashlib.sha256(b"0123456789").hexdigest(), data=b"0123456789"),
        IntakeV1(since=T0, models=[ModelIntake(model_name="chest-effnetlite0", model_version="1.0",
                                               diagnosed=40, refused_not_chest=3,
                                               refused_unreadable=1)]),
    ]


def fixed_envelope(payload: Payload, n: int = 1) -> Envelope:  # type: ignore[type-arg]
    """An envelope with a fixed id and time, for golden bytes."""
    return Envelope.wrap(payload, sender="amb-1", case_id=CASE_ID,
                         message_id=uuid.UUID(int=n), sent_at=T0)
