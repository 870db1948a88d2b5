"""Payload models of the message contract, one class per (schema, version).

Field names are the wire names; fields that are None are left off the wire.
Readers ignore payload fields they do not know
(tolerant reader), so a field may be added, with a default, within a version;
any other change (rename, removal, new meaning, new type) is a new version
registered beside the old one.

The models live by message family: :mod:`shared.messages.base` (what they
share), :mod:`shared.messages.diagnosis` (the AI result and the full image),
:mod:`shared.messages.cases` (offers, decisions, updates, status, alerts) and
:mod:`shared.messages.telemetry` (status, position, intake, capacity); this
module registers them.
"""

from __future__ import annotations

from shared.messages.base import Payload, Position, Probability, WireModel
from shared.messages.cases import (
    CaseDecisionV1,
    CaseStatusV1,
    CaseUpdateV1,
    DispatchAlertV1,
    ErDecisionV1,
    OfferSummary,
    OfferV1,
)
from shared.messages.diagnosis import (
    CHUNK_BYTES,
    DiagnosisV1,
    FindingScore,
    ImageChunkV1,
    ImageInfo,
    ModelInfo,
    Overlay,
    Patient,
    Region,
    Triage,
    Vitals,
)
from shared.messages.telemetry import MAX_COUNT, CapacityV1, IntakeV1, ModelIntake, PositionV1, StatusV1

__all__ = [
    "CHUNK_BYTES", "MAX_COUNT", "PAYLOAD_TYPES", "CapacityV1", "CaseDecisionV1", "CaseStatusV1",
    "CaseUpdateV1", "DiagnosisV1", "DispatchAlertV1", "ErDecisionV1", "FindingScore", "ImageChunkV1",
    "ImageInfo", "IntakeV1", "ModelInfo", "ModelIntake", "OfferSummary", "OfferV1", "Overlay", "Patient",
    "Payload", "Position", "PositionV1", "Probability", "Region", "StatusV1", "Triage", "Vitals",
    "WireModel",
]

PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    DiagnosisV1,
    OfferV1,
    ErDecisionV1,
    CaseDecisionV1,
    CaseUpdateV1,
    CaseStatusV1,
    DispatchAlertV1,
    ImageChunkV1,
    StatusV1,
    PositionV1,
    CapacityV1,
    IntakeV1,
)
