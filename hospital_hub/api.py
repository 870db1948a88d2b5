"""HTTP API and web pages of the hub (FastAPI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from hospital_hub.cases import AI_NOTICE, DecisionResult
from hospital_hub.models import (
    Ambulance,
    AmbulancePublic,
    Case,
    CasePublic,
    CaseStatus,
    Hospital,
    HospitalPublic,
    Offer,
    OfferPublic,
    OfferState,
)
from hospital_hub.runtime import HubRuntime
from shared import __version__
from shared.errors import NotFound

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def get_runtime(request: Request) -> HubRuntime:
    """The hub runtime that this app serves."""
    runtime: HubRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[HubRuntime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A read session per request."""
    with Session(runtime.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


class DecisionRequest(BaseModel):
    """An ER's decision on an offer, from the console or an integration."""

    decision: Literal["accept", "decline"]
    decided_by: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=500)


class DecisionResponse(BaseModel):
    """What the decision did."""

    outcome: str
    case_status: CaseStatus


def _case_public(session: Session, case: Case) -> CasePublic:
    offers = session.exec(select(Offer).where(Offer.case_id == case.id).order_by(col(Offer.rank)))
    return CasePublic.model_validate(
        {**case.model_dump(), "offers": [OfferPublic.model_validate(o) for o in offers]}
    )


def _active_first(session: Session, limit: int = 200) -> list[Case]:
    cases = session.exec(select(Case).order_by(col(Case.received_at).desc()).limit(limit)).all()
    return sorted(cases, key=lambda c: (c.status != CaseStatus.OFFERED, c.triage_level))


api = APIRouter(prefix="/api", tags=["api"])


@api.get("/hospitals", response_model=list[HospitalPublic])
def list_hospitals(session: SessionDep) -> list[Hospital]:
    """Every hospital in the registry."""
    return list(session.exec(select(Hospital).order_by(col(Hospital.id))).all())


@api.get("/ambulances", response_model=list[AmbulancePublic])
def list_ambulances(session: SessionDep) -> list[Ambulance]:
    """Every ambulance the hub has heard from, with its last position."""
    return list(session.exec(select(Ambulance).order_by(col(Ambulance.id))).all())


@api.get("/cases", response_model=list[CasePublic])
def list_cases(session: SessionDep, status: CaseStatus | None = None) -> list[CasePublic]:
    """Recent cases, open ones first, most severe first."""
    cases = _active_first(session)
    return [_case_public(session, c) for c in cases if status is None or c.status == status]


@api.get("/cases/{case_id}", response_model=CasePublic)
def get_case(case_id: str, session: SessionDep) -> CasePublic:
    """One case with its offers."""
    case = session.get(Case, case_id)
    if case is None:
        raise HTTPException(404, f"no case {case_id}")
    return _case_public(session, case)


@api.get("/cases/{case_id}/thumbnail.jpg", response_class=Response)
def get_thumbnail(case_id: str, session: SessionDep) -> Response:
    """The X-ray thumbnail sent with the diagnosis."""
    case = session.get(Case, case_id)
    if case is None or not case.thumbnail_jpeg:
        raise HTTPException(404, f"no thumbnail for case {case_id}")
    return Response(case.thumbnail_jpeg, media_type="image/jpeg")


@api.post("/cases/{case_id}/offers/{hospital_id}/decision", response_model=DecisionResponse)
def post_decision(
    case_id: str, hospital_id: str, body: DecisionRequest, runtime: RuntimeDep
) -> DecisionResponse:
    """Accept or decline an offer; the ambulance is told at once on accept."""
    result = _decide(runtime, case_id, hospital_id, body)
    if result.outcome in ("too_late", "already_decided"):
        raise HTTPException(409, f"offer is closed: {result.outcome}")
    return DecisionResponse(outcome=result.outcome, case_status=result.case_status)


def _decide(runtime: HubRuntime, case_id: str, hospital_id: str,
            body: DecisionRequest) -> DecisionResult:
    try:
        result = runtime.cases.decide(case_id, hospital_id, body.decision,
                                      decided_by=body.decided_by, reason=body.reason)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    runtime.outbox.flush()
    return result


pages = APIRouter(include_in_schema=False)


@pages.get("/", response_class=HTMLResponse)
def dispatch_page(request: Request, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    """Dispatch overview: cases, ambulances and ERs."""
    cases = [_case_public(session, c) for c in _active_first(session, 50)]
    return TEMPLATES.TemplateResponse(request, "dispatch.html", {
        "cases": cases,
        "ambulances": session.exec(select(Ambulance).order_by(col(Ambulance.id))).all(),
        "hospitals": session.exec(select(Hospital).order_by(col(Hospital.id))).all(),
        "connected": runtime.communicator.connected,
        "notice": AI_NOTICE,
        "version": __version__,
    })


@pages.get("/er/{hospital_id}", response_class=HTMLResponse)
def er_page(hospital_id: str, request: Request, session: SessionDep) -> HTMLResponse:
    """An ER's console: its open offers with Accept and Decline."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise HTTPException(404, f"no hospital {hospital_id}")
    offers = session.exec(
        select(Offer).where(Offer.hospital_id == hospital_id)
        .order_by(col(Offer.created_at).desc()).limit(50)
    ).all()
    rows = [(offer, session.get(Case, offer.case_id)) for offer in offers]
    open_rows = sorted([r for r in rows if r[0].state == OfferState.OPEN],
                       key=lambda r: r[1].triage_level if r[1] else 9)
    closed_rows = [r for r in rows if r[0].state != OfferState.OPEN]
    return TEMPLATES.TemplateResponse(request, "er.html", {
        "hospital": hospital, "open_rows": open_rows, "closed_rows": closed_rows,
        "notice": AI_NOTICE, "version": __version__,
    })


@pages.post("/er/{hospital_id}/cases/{case_id}/decision")
def er_decision_form(
    hospital_id: str,
    case_id: str,
    runtime: RuntimeDep,
    decision: Annotated[Literal["accept", "decline"], Form()],
    decided_by: Annotated[str, Form(min_length=1, max_length=128)] = "ER doctor",
    reason: Annotated[str | None, Form(max_length=500)] = None,
) -> RedirectResponse:
    """The console's Accept / Decline buttons."""
    _decide(runtime, case_id, hospital_id,
            DecisionRequest(decision=decision, decided_by=decided_by, reason=reason or None))
    return RedirectResponse(f"/er/{hospital_id}", status_code=303)


def create_app(
    runtime: HubRuntime, manage_runtime: bool = True, wait_for_broker: bool = True
) -> FastAPI:
    """Build the app around ``runtime``; with ``manage_runtime`` the app's
    lifespan starts and stops it. Without ``wait_for_broker`` the pages come
    up at once and the broker connection follows when it can (``/health``
    says ``degraded`` until then)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            runtime.start(wait=wait_for_broker)
        try:
            yield
        finally:
            if manage_runtime:
                runtime.stop()

    app = FastAPI(title="goldenhour hub", version=__version__, lifespan=lifespan,
                  description=f"Routes ambulance chest X-ray cases to ERs. {AI_NOTICE}.")
    app.state.runtime = runtime

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, object]:
        """Liveness and the figures an operator looks at first."""
        return {
            "status": "ok" if runtime.communicator.connected else "degraded",
            "broker_connected": runtime.communicator.connected,
            "outbox_pending": runtime.outbox.pending(),
            "rejected_messages": dict(runtime.messenger.rejected),
            "version": __version__,
        }

    app.include_router(api)
    app.include_router(pages)
    return app
