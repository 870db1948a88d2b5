"""What every payload model shares: the wire rules (unknown fields ignored,
frozen, no NaN or infinity, bytes as base64 in JSON), the :class:`Payload`
base with its schema name, version and size limit, and a WGS-84 position."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

Probability = float


class WireModel(BaseModel):
    """Base of every model on the wire."""

    # bytes (thumbnails, heat maps) go to JSON as base64, never as raw UTF-8
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False,
                              ser_json_bytes="base64", val_json_bytes="base64")


class Payload(WireModel):
    """Base of every payload; subclasses set the schema name and version."""

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    MAX_BYTES: ClassVar[int] = 64 * 1024
    """Largest encoded envelope accepted for this payload."""


class Position(WireModel):
    """A WGS-84 position."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
