"""``/api/hospitals``: the registry's ERs with their live capacity, setting
an ER's free beds, and an ER's offers."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sqlmodel import col, select

from hospital_hub.auth import HubSecurity, Principal
from hospital_hub.deps import (
    CaseReader,
    HospitalActor,
    HospitalReader,
    RuntimeDep,
    SecurityDep,
    SessionDep,
    client_address,
)
from hospital_hub.er_actions import set_capacity
from hospital_hub.live import CapacityError
from hospital_hub.models import CapacityUpdate, Hospital, HospitalPublic, Offer, OfferPublic, OfferState
from hospital_hub.runtime import HubRuntime
from hospital_hub.schemas import hospital_public
from shared.errors import NotFound

router = APIRouter(prefix="/hospitals")


def apply_capacity(runtime: HubRuntime, security: HubSecurity, user: Principal, hospital_id: str,
                   body: CapacityUpdate, request: Request) -> None:
    """``set_capacity`` for a request: an unknown ER is a 404, more beds than it has a 422
    (the JSON route and the console's form answer alike)."""
    try:
        set_capacity(runtime, security, user, hospital_id, body, client_address(request))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CapacityError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("", response_model=list[HospitalPublic])
def list_hospitals(user: CaseReader, session: SessionDep, runtime: RuntimeDep) -> list[HospitalPublic]:
    """Every hospital in the registry with its live capacity (an ER's users: their own)."""
    stale = runtime.settings.capacity_stale_s
    query = select(Hospital).order_by(col(Hospital.id))
    if user.hospital_id is not None:
        query = query.where(Hospital.id == user.hospital_id)
    return [hospital_public(h, stale) for h in session.exec(query).all()]


@router.get("/{hospital_id}", response_model=HospitalPublic)
def get_hospital(hospital_id: str, user: HospitalReader, session: SessionDep,
                 runtime: RuntimeDep) -> HospitalPublic:
    """One hospital with its live capacity."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise HTTPException(404, f"no hospital {hospital_id}")
    return hospital_public(hospital, runtime.settings.capacity_stale_s)


@router.put("/{hospital_id}/capacity", response_model=HospitalPublic)
def put_capacity(hospital_id: str, user: HospitalActor, body: CapacityUpdate, request: Request,
                 runtime: RuntimeDep, session: SessionDep, security: SecurityDep) -> HospitalPublic:
    """Set an ER's free beds (the ER's own users, or an admin)."""
    apply_capacity(runtime, security, user, hospital_id, body, request)
    return get_hospital(hospital_id, user, session, runtime)


@router.get("/{hospital_id}/offers", response_model=list[OfferPublic])
def hospital_offers(hospital_id: str, user: HospitalReader, request: Request, session: SessionDep,
                    security: SecurityDep, state: OfferState | None = None) -> list[Offer]:
    """This hospital's offers, newest first (the latest 200; with ``state=open``: all)."""
    query = select(Offer).where(Offer.hospital_id == hospital_id)
    if state:
        query = query.where(Offer.state == state)
    limit = None if state == OfferState.OPEN else 200  # open offers: every one
    offers = list(session.exec(query.order_by(col(Offer.created_at).desc()).limit(limit)).all())
    security.access.viewed(user, "hospital_offers", [o.case_id for o in offers],
                           client_address(request), hospital_id=hospital_id)
    return offers
