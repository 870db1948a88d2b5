"""Who is there and what they have: online/offline status, an ambulance's
position and image intake, an ER's capacity."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from shared.messages.base import Payload, Position, WireModel


class StatusV1(Payload):
    """Any participant: retained online/offline status (also the last will)."""

    SCHEMA: ClassVar[str] = "status"
    VERSION: ClassVar[int] = 1

    role: Literal["edge", "hub", "er"]
    state: Literal["online", "offline"]
    software_version: str


MAX_COUNT = 2**31 - 1
"""Largest image count: what a 32-bit signed integer column holds."""


class ModelIntake(WireModel):
    """One model's image intake on an edge: images diagnosed and images refused."""

    model_name: str = Field(max_length=64)
    model_version: str = Field(max_length=32)
    diagnosed: int = Field(ge=0, le=MAX_COUNT)
    """Images diagnosed and queued as a case."""
    refused_not_chest: int = Field(ge=0, le=MAX_COUNT)
    """Refused as not a frontal chest radiograph: the out-of-distribution guard,
    another body part or modality, a lateral view."""
    refused_unreadable: int = Field(ge=0, le=MAX_COUNT)
    """Refused as an unusable file: corrupt, unsupported, blank, too small or
    large, no pixel data, or a synthetic image."""


class IntakeV1(Payload):
    """Ambulance -> hub: the edge's cumulative image intake per model since
    ``since`` (kept across restarts); retained, the latest counts replace the earlier."""

    SCHEMA: ClassVar[str] = "intake"
    VERSION: ClassVar[int] = 1

    since: AwareDatetime
    models: list[ModelIntake] = Field(max_length=32)


class PositionV1(Payload):
    """Ambulance -> hub: where the ambulance is now."""

    SCHEMA: ClassVar[str] = "position"
    VERSION: ClassVar[int] = 1

    position: Position
    speed_kmh: float | None = Field(default=None, ge=0, le=400)
    heading_deg: float | None = Field(default=None, ge=0, lt=360)


class CapacityV1(Payload):
    """ER -> hub: free beds and whether the ER accepts ambulances now."""

    SCHEMA: ClassVar[str] = "capacity"
    VERSION: ClassVar[int] = 1

    er_beds_free: int = Field(ge=0, le=10_000)
    icu_beds_free: int = Field(ge=0, le=10_000)
    accepting: bool = True
