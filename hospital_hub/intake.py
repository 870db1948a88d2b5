"""The out-of-distribution refusal rate in the field: each edge reports its
cumulative image intake per model, retained on ``ambulance/{id}/intake``
(``IntakeV1``: images diagnosed, refused as not a chest radiograph, refused as
an unusable file); the hub keeps the latest report per ambulance and model version
(table ``edgeintake``) and computes, per model version and per ambulance,

    refusal rate = refused_not_chest / (diagnosed + refused_not_chest)

with its counts and a Wilson 95% interval. Unusable files (corrupt, blank,
unsupported) are counted beside it but not in it: they say nothing about what
the X-ray unit photographs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.db import session_scope
from hospital_hub.field_stats import Rate
from hospital_hub.intake_models import EdgeIntake
from hospital_hub.models import utcnow
from shared.messages import IntakeV1

logger = logging.getLogger(__name__)

COUNTS = ("diagnosed", "refused_not_chest", "refused_unreadable")


def record_intake(engine: Engine, ambulance_id: str, intake: IntakeV1, at: datetime) -> int:
    """Store an edge's latest counts (a report older than the stored one is
    ignored: the counts are cumulative); returns the rows written."""
    at = min(at, utcnow())  # a device clock ahead must not make later reports look stale
    written = 0
    with session_scope(engine) as session:
        for model in intake.models:
            row = session.exec(select(EdgeIntake).where(
                EdgeIntake.ambulance_id == ambulance_id, EdgeIntake.model_name == model.model_name,
                EdgeIntake.model_version == model.model_version)).first()
            if row is not None and row.reported_at > at:
                continue
            row = row or EdgeIntake(ambulance_id=ambulance_id, model_name=model.model_name,
                                    model_version=model.model_version, since=intake.since)
            for name in COUNTS:
                setattr(row, name, getattr(model, name))
            row.since, row.reported_at = intake.since, at
            session.add(row)
            written += 1
    logger.info("edge intake recorded", extra={"ambulance_id": ambulance_id, "models": written})
    return written


def intake_figures(diagnosed: int, not_chest: int, unreadable: int) -> dict[str, Any]:
    """The counts and the refusal rate (not-chest refusals among diagnosed plus those)."""
    return {"diagnosed": diagnosed, "refused_not_chest": not_chest,
            "refused_unreadable": unreadable,
            "rate": Rate(not_chest, diagnosed + not_chest).as_dict()}


def refusal_figures(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Counts and the refusal rate per model version (all ambulances) and per
    model version and ambulance, with when the counting began and the last report."""
    rows = session.exec(select(EdgeIntake).order_by(col(EdgeIntake.model_name),
                                                    col(EdgeIntake.model_version),
                                                    col(EdgeIntake.ambulance_id))).all()
    models: dict[str, dict[str, Any]] = {}
    devices = []
    for row in rows:
        key = f"{row.model_name} {row.model_version}"
        devices.append({"model": key, "ambulance_id": row.ambulance_id,
                        "since": row.since.isoformat(), "reported_at": row.reported_at.isoformat(),
                        **intake_figures(row.diagnosed, row.refused_not_chest, row.refused_unreadable)})
        total = models.setdefault(key, {"ambulances": 0, **dict.fromkeys(COUNTS, 0)})
        total["ambulances"] += 1
        for name in COUNTS:
            total[name] += getattr(row, name)
    return {"models": [{"model": key, "ambulances": t["ambulances"],
                        **intake_figures(t["diagnosed"], t["refused_not_chest"], t["refused_unreadable"])}
                       for key, t in models.items()],
            "devices": devices}


class IntakeCollector(Collector):
    """Intake counts and refusal rates, read at scrape time from the shared database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def describe(self) -> list[Any]:
        """Nothing up front: :meth:`collect` talks to the database."""
        return []

    def collect(self) -> Iterator[Any]:
        try:
            with Session(self._engine) as session:
                figures = refusal_figures(session)
        except Exception as exc:  # a scrape must answer even when the database does not
            logger.warning("metrics: edge intake unavailable", extra={"error": str(exc)[:300]})
            return
        images = GaugeMetricFamily(
            "goldenhour_hub_edge_intake_images",
            "Images an ambulance's edge took in per model, as it last reported: diagnosed, "
            "refused_not_chest (not a frontal chest radiograph), refused_unreadable (unusable "
            "file).", labels=["ambulance_id", "model", "outcome"])
        device_rate = GaugeMetricFamily(
            "goldenhour_hub_device_ood_refusal_rate",
            "Share of an ambulance's images refused as not a chest radiograph: "
            "refused_not_chest / (diagnosed + refused_not_chest) (absent while 0).",
            labels=["ambulance_id", "model"])
        for d in figures["devices"]:
            for name in COUNTS:
                images.add_metric([d["ambulance_id"], d["model"], name], d[name])
            if d["rate"]["value"] is not None:
                device_rate.add_metric([d["ambulance_id"], d["model"]], d["rate"]["value"])
        model_rate = GaugeMetricFamily(
            "goldenhour_hub_ood_refusal_rate",
            "Share of a model version's images (all ambulances) refused as not a chest "
            "radiograph: refused_not_chest / (diagnosed + refused_not_chest) (absent while 0).",
            labels=["model"])
        for m in figures["models"]:
            if m["rate"]["value"] is not None:
                model_rate.add_metric([m["model"]], m["rate"]["value"])
        yield images
        yield device_rate
        yield model_rate
