"""Table of each ambulance's image intake per model, as its edge last reported it
(``IntakeV1`` on ``ambulance/{id}/intake``): images diagnosed, refused as not a chest radiograph,
refused as an unusable file. Cumulative on the edge, so the latest report wins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from hospital_hub.models import _ts, utcnow


class EdgeIntake(SQLModel, table=True):
    """One ambulance and model version's intake counts (latest report)."""

    __table_args__ = (UniqueConstraint("ambulance_id", "model_name", "model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    ambulance_id: str = Field(max_length=64, index=True)
    model_name: str = Field(max_length=100)
    model_version: str = Field(max_length=50)
    diagnosed: int = 0
    refused_not_chest: int = 0
    refused_unreadable: int = 0
    since: datetime = Field(sa_column=_ts(nullable=False))
    """When the edge started counting (its counts are cumulative from then)."""
    reported_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    """When the edge sent the report (the envelope's ``sent_at``)."""
