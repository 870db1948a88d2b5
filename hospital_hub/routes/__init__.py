"""The hub's JSON API, one module per resource. Access rules come from
:mod:`hospital_hub.deps`, shapes from :mod:`hospital_hub.schemas`; the web
pages are in :mod:`hospital_hub.pages`. Dispatch's re-offer
(:mod:`hospital_hub.dispatch_routes`) and the ER verdicts
(:mod:`hospital_hub.verdict_routes`) add their own routes."""

from __future__ import annotations

from fastapi import APIRouter

from hospital_hub.routes import (
    ambulances,
    case_formats,
    case_images,
    cases,
    decisions,
    events,
    health,
    hospitals,
    model_offer,
)

api = APIRouter(prefix="/api", tags=["api"])
for _resource in (hospitals, ambulances, cases, case_images, case_formats, events, decisions):
    api.include_router(_resource.router)

__all__ = ["api", "health", "model_offer"]
