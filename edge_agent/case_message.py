"""A pipeline result made the ``DiagnosisV1`` of a case: the agent adds what the
pipeline does not know (which ambulance, where, when, which patient)."""

from __future__ import annotations

from datetime import UTC, datetime

from edge_agent.operators import DiagnosisResult
from edge_agent.pipeline import described
from shared.messages import DiagnosisV1, Patient, Position


def diagnosis_message(result: DiagnosisResult, *, ambulance_id: str, position: Position,
                      patient: Patient | None = None, captured_at: datetime | None = None
                      ) -> DiagnosisV1:
    """The message for ``result``.

    Raises:
        InputImageError: the result does not fit the message (said as the image's fault).
    """
    with described(result.image.source):
        return DiagnosisV1(
            ambulance_id=ambulance_id,
            captured_at=captured_at or datetime.now(UTC),
            position=position,
            image=result.image,
            model=result.model,
            findings=result.findings,
            top3=result.top3,
            triage=result.triage,
            timings_ms=result.timings_ms,
            patient=patient,
            overlays=result.overlays,
            regions=result.regions,
            vitals=result.vitals,
        )
