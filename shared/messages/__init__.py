"""The message contract: payload models, the envelope and the msgpack codec."""

from shared.messages.codec import MAX_MESSAGE_BYTES, decode, encode, payload_type
from shared.messages.envelope import Envelope
from shared.messages.payloads import (
    PAYLOAD_TYPES,
    CapacityV1,
    CaseDecisionV1,
    DiagnosisV1,
    ErDecisionV1,
    FindingScore,
    ImageInfo,
    ModelInfo,
    OfferV1,
    Patient,
    Payload,
    Position,
    PositionV1,
    Region,
    StatusV1,
    Triage,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PAYLOAD_TYPES",
    "CapacityV1",
    "CaseDecisionV1",
    "DiagnosisV1",
    "Envelope",
    "ErDecisionV1",
    "FindingScore",
    "ImageInfo",
    "ModelInfo",
    "OfferV1",
    "Patient",
    "Payload",
    "Position",
    "PositionV1",
    "Region",
    "StatusV1",
    "Triage",
    "decode",
    "encode",
    "payload_type",
]
