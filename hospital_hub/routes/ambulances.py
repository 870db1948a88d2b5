"""``/api/ambulances``: every ambulance the hub has heard from."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import col, select

from hospital_hub.deps import Overseer, SessionDep
from hospital_hub.models import Ambulance, AmbulancePublic

router = APIRouter(prefix="/ambulances")


@router.get("", response_model=list[AmbulancePublic])
def list_ambulances(user: Overseer, session: SessionDep) -> list[Ambulance]:
    """Every ambulance the hub has heard from, with its last position."""
    return list(session.exec(select(Ambulance).order_by(col(Ambulance.id))).all())
