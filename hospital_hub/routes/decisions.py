"""``POST /api/cases/{case_id}/offers/{hospital_id}/decision``: an ER
accepts or declines an offer (the console's buttons do the same through
:mod:`hospital_hub.pages.er`; both call :func:`hospital_hub.er_actions.decide_offer`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from hospital_hub.deps import HospitalActor, RuntimeDep, SecurityDep, client_address
from hospital_hub.er_actions import decide_offer
from hospital_hub.schemas import DecisionBody, DecisionResponse
from shared.errors import CaseError, NotFound

router = APIRouter()


@router.post("/cases/{case_id}/offers/{hospital_id}/decision", response_model=DecisionResponse)
def post_decision(
    case_id: str, hospital_id: str, user: HospitalActor, body: DecisionBody, request: Request,
    runtime: RuntimeDep, security: SecurityDep,
) -> DecisionResponse:
    """Accept or decline (with a reason) an offer to your ER; the ambulance is
    told at once. A late accept answers 409 "already placed"."""
    try:
        result = decide_offer(runtime, security, user, case_id, hospital_id, body.decision,
                              reason=body.reason, named=body.decided_by,
                              client=client_address(request))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CaseError as exc:  # the body's schema already asks a decline for a reason
        raise HTTPException(422, str(exc)) from exc
    if result.outcome in ("already_placed", "already_decided"):
        detail = ("already placed" + (f" at {result.placed_at}" if result.placed_at else "")
                  if result.outcome == "already_placed" else "offer already decided")
        raise HTTPException(409, detail)
    return DecisionResponse(outcome=result.outcome, case_status=result.case_status,
                            placed_at=result.placed_at)
