"""An ER's console: its open offers, one case's view, and the forms behind
Accept / Decline and the free beds (the same actions as the JSON API, through
:mod:`hospital_hub.er_actions`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import select

from hospital_hub import board, i18n, views
from hospital_hub.deps import (
    PAGE_DECIDERS,
    PageHospitalDecider,
    PageHospitalViewer,
    RuntimeDep,
    SecurityDep,
    SessionDep,
    client_address,
)
from hospital_hub.er_actions import decide_offer
from hospital_hub.models import CapacityUpdate, Case, CaseStatus, Hospital, Offer
from hospital_hub.pages.render import lang, render
from hospital_hub.routes.hospitals import apply_capacity
from hospital_hub.schemas import hospital_public
from shared.errors import CaseError, NotFound

router = APIRouter(prefix="/er/{hospital_id}")

ERROR_CODES = frozenset({"reason_needed", "already_placed", "already_decided"})
"""The console's error messages (``?error=``), as the forms below name them."""


@router.get("", response_class=HTMLResponse)
def er_page(hospital_id: str, user: PageHospitalViewer, request: Request, session: SessionDep,
            runtime: RuntimeDep, security: SecurityDep, error: str | None = None) -> HTMLResponse:
    """An ER's console: its open offers, most severe first, with countdowns,
    Accept and Decline, and its capacity (dispatchers see it read-only)."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise HTTPException(404, f"no hospital {hospital_id}")
    shown = board.er_rows(session, hospital, runtime.cases.router)  # every open offer
    security.access.viewed(user, "er_page", shown.pop("case_ids"), client_address(request),
                           hospital_id=hospital_id)
    return render(request, "er.html", user, **shown, **{
        "hospital": hospital_public(hospital, runtime.settings.capacity_stale_s),
        "error": error if error in ERROR_CODES else None,
        "can_act": user.kind in PAGE_DECIDERS,
    })


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def er_case_page(hospital_id: str, case_id: str, user: PageHospitalViewer, request: Request,
                 session: SessionDep, runtime: RuntimeDep, security: SecurityDep,
                 error: str | None = None) -> HTMLResponse:
    """One case offered to this ER: the X-ray viewer with the AI boxes and heat
    maps, the AI findings and the model, triage and its reasons, patient,
    vitals, handover, ETA and position, Accept and Decline (404 for a case not
    offered to this ER)."""
    hospital = session.get(Hospital, hospital_id)
    case = session.get(Case, case_id)
    offer = session.exec(select(Offer).where(Offer.case_id == case_id,
                                             Offer.hospital_id == hospital_id)).first()
    if hospital is None or case is None or offer is None:
        raise HTTPException(404, f"no case {case_id}")
    security.access.viewed(user, "case_page", [case.id], client_address(request),
                           hospital_id=hospital_id)
    details = views.case_details(session, case)
    t = i18n.translator(lang(request))
    viewer = {"case_id": case.id, "regions": details["regions"],
              "preview": f"/api/cases/{case.id}/preview.png",
              "thumbnail": f"/api/cases/{case.id}/thumbnail.jpg",
              "heatmaps": [{"finding": h["finding"], "url": h["url"]} for h in details["heatmaps"]],
              "sources": {"heatmap": t("source.heatmap"), "detector": t("source.detector"),
                          "": t("source.unknown")}}
    eta = (board.live_eta(session, case, hospital, runtime.cases.router)
           if case.status == CaseStatus.ACCEPTED and case.accepted_hospital_id == hospital_id
           else None)
    return render(request, "case.html", user, **{
        "hospital": hospital_public(hospital, runtime.settings.capacity_stale_s),
        "case": case, "offer": offer, "details": details, "viewer": viewer, "eta": eta,
        "error": error if error in ERROR_CODES else None,
        "can_act": user.kind in PAGE_DECIDERS,
    })


@router.post("/cases/{case_id}/decision")
def er_decision_form(
    hospital_id: str,
    case_id: str,
    user: PageHospitalDecider,
    request: Request,
    runtime: RuntimeDep,
    security: SecurityDep,
    decision: Annotated[Literal["accept", "decline"], Form()],
    reason: Annotated[str | None, Form(max_length=500)] = None,
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> RedirectResponse:
    """The console's Accept / Decline buttons (on the list and the case view);
    back to the page they were on, with the console's message when refused."""
    back = f"/er/{hospital_id}"
    if next in (back, f"{back}/cases/{case_id}"):
        back = next
    try:
        result = decide_offer(runtime, security, user, case_id, hospital_id, decision,
                              reason=reason, client=client_address(request))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CaseError:  # a decline without a reason
        return RedirectResponse(f"{back}?error=reason_needed", status_code=303)
    if result.outcome in ("already_placed", "already_decided"):
        back += f"?error={result.outcome}"
    return RedirectResponse(back, status_code=303)


@router.post("/capacity")
def er_capacity_form(
    hospital_id: str,
    user: PageHospitalDecider,
    request: Request,
    runtime: RuntimeDep,
    security: SecurityDep,
    er_beds_free: Annotated[int, Form(ge=0, le=1000)],
    icu_beds_free: Annotated[int, Form(ge=0, le=1000)],
    accepting: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """The console's capacity form."""
    body = CapacityUpdate(er_beds_free=er_beds_free, icu_beds_free=icu_beds_free,
                          accepting=accepting)
    apply_capacity(runtime, security, user, hospital_id, body, request)
    return RedirectResponse(f"/er/{hospital_id}", status_code=303)
