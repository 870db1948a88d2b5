"""HTTP API and web pages of the hub (FastAPI). Every state change goes
through the same service layer as the MQTT handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, model_validator
from sqlmodel import Session, col, select

from hospital_hub.cases import AI_NOTICE, DecisionResult
from hospital_hub.models import (
    Ambulance,
    AmbulancePublic,
    CapacityUpdate,
    Case,
    CaseDiagnosis,
    CasePublic,
    CaseStatus,
    Hospital,
    HospitalPublic,
    Offer,
    OfferPublic,
    OfferState,
    utcnow,
)
from hospital_hub.records import CaseFilter, case_pdf, case_record, search_cases
from hospital_hub.runtime import HubRuntime
from shared import __version__
from shared.errors import CaseError, NotFound
from shared.findings import Finding
from shared.messages import CaseUpdateV1

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

    @model_validator(mode="after")
    def _decline_has_reason(self) -> DecisionRequest:
        if self.decision == "decline" and not (self.reason and self.reason.strip()):
            raise ValueError("a decline needs a reason")
        return self


class DecisionResponse(BaseModel):
    """What the decision did; ``placed_at`` names the ER that has the patient."""

    outcome: str
    case_status: CaseStatus
    placed_at: str | None = None


class CasePage(BaseModel):
    """One page of the case history."""

    items: list[CasePublic]
    total: int
    limit: int
    offset: int


def _case_public(session: Session, case: Case) -> CasePublic:
    offers = session.exec(select(Offer).where(Offer.case_id == case.id).order_by(col(Offer.rank)))
    return CasePublic.model_validate(
        {**case.model_dump(), "offers": [OfferPublic.model_validate(o) for o in offers]}
    )


def _hospital_public(hospital: Hospital, stale_after_s: float) -> HospitalPublic:
    stale = (hospital.capacity_at is None
             or utcnow() - hospital.capacity_at > timedelta(seconds=stale_after_s))
    return HospitalPublic.model_validate({**hospital.model_dump(), "capacity_stale": stale})


def _active_first(session: Session, limit: int = 200) -> list[Case]:
    cases = session.exec(select(Case).order_by(col(Case.received_at).desc()).limit(limit)).all()
    waiting = (CaseStatus.OFFERED, CaseStatus.NO_ER_AVAILABLE)
    return sorted(cases, key=lambda c: (c.status not in waiting, c.triage_level))


api = APIRouter(prefix="/api", tags=["api"])


@api.get("/hospitals", response_model=list[HospitalPublic])
def list_hospitals(session: SessionDep, runtime: RuntimeDep) -> list[HospitalPublic]:
    """Every hospital in the registry with its live capacity."""
    stale = runtime.settings.capacity_stale_s
    return [_hospital_public(h, stale)
            for h in session.exec(select(Hospital).order_by(col(Hospital.id))).all()]


@api.get("/hospitals/{hospital_id}", response_model=HospitalPublic)
def get_hospital(hospital_id: str, session: SessionDep, runtime: RuntimeDep) -> HospitalPublic:
    """One hospital with its live capacity."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise HTTPException(404, f"no hospital {hospital_id}")
    return _hospital_public(hospital, runtime.settings.capacity_stale_s)


@api.put("/hospitals/{hospital_id}/capacity", response_model=HospitalPublic)
def put_capacity(hospital_id: str, body: CapacityUpdate, runtime: RuntimeDep,
                 session: SessionDep) -> HospitalPublic:
    """Set an ER's free beds from its console."""
    try:
        runtime.live.set_capacity(hospital_id, er_beds_free=body.er_beds_free,
                                  icu_beds_free=body.icu_beds_free, accepting=body.accepting,
                                  source="console")
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return get_hospital(hospital_id, session, runtime)


@api.get("/hospitals/{hospital_id}/offers", response_model=list[OfferPublic])
def hospital_offers(hospital_id: str, session: SessionDep,
                    state: OfferState | None = None) -> list[Offer]:
    """This hospital's offers, newest first."""
    query = select(Offer).where(Offer.hospital_id == hospital_id)
    if state:
        query = query.where(Offer.state == state)
    return list(session.exec(query.order_by(col(Offer.created_at).desc()).limit(200)).all())


@api.get("/ambulances", response_model=list[AmbulancePublic])
def list_ambulances(session: SessionDep) -> list[Ambulance]:
    """Every ambulance the hub has heard from, with its last position."""
    return list(session.exec(select(Ambulance).order_by(col(Ambulance.id))).all())


@api.get("/cases", response_model=CasePage)
def list_cases(
    session: SessionDep,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    hospital_id: str | None = None,
    ambulance_id: str | None = None,
    severity: Annotated[int | None, Query(ge=1, le=5, description="triage level this severe "
                                                                  "or more")] = None,
    finding: Finding | None = None,
    status: CaseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CasePage:
    """The case history, newest first, with filters and pagination."""
    where = CaseFilter(date_from=date_from, date_to=date_to, hospital_id=hospital_id,
                       ambulance_id=ambulance_id, severity=severity, finding=finding,
                       status=status)
    cases, total = search_cases(session, where, limit=limit, offset=offset)
    return CasePage(items=[_case_public(session, c) for c in cases], total=total, limit=limit,
                    offset=offset)


@api.get("/cases/{case_id}", response_model=CasePublic)
def get_case(case_id: str, session: SessionDep) -> CasePublic:
    """One case with its offers."""
    case = session.get(Case, case_id)
    if case is None:
        raise HTTPException(404, f"no case {case_id}")
    return _case_public(session, case)


@api.get("/cases/{case_id}/record.json")
def get_record(case_id: str, session: SessionDep) -> dict[str, object]:
    """The whole record: patient, vitals, diagnoses, triage history, offers,
    handover and the audit trail."""
    try:
        return case_record(session, case_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@api.get("/cases/{case_id}/record.pdf", response_class=Response)
def get_record_pdf(case_id: str, session: SessionDep) -> Response:
    """The whole record as a printable PDF."""
    try:
        data = case_pdf(case_record(session, case_id))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="goldenhour-case-{case_id}.pdf"'})


@api.get("/cases/{case_id}/thumbnail.jpg", response_class=Response)
def get_thumbnail(case_id: str, session: SessionDep) -> Response:
    """The latest X-ray thumbnail of the case."""
    diagnosis = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case_id)
                             .order_by(col(CaseDiagnosis.id).desc())).first()
    if diagnosis is None or not diagnosis.thumbnail_jpeg:
        raise HTTPException(404, f"no thumbnail for case {case_id}")
    return Response(diagnosis.thumbnail_jpeg, media_type="image/jpeg")


@api.post("/cases/{case_id}/offers/{hospital_id}/decision", response_model=DecisionResponse)
def post_decision(
    case_id: str, hospital_id: str, body: DecisionRequest, runtime: RuntimeDep
) -> DecisionResponse:
    """Accept or decline (with a reason) an offer; the ambulance is told at once.
    A late accept answers 409 "already placed"."""
    result = _decide(runtime, case_id, hospital_id, body)
    if result.outcome in ("already_placed", "already_decided"):
        detail = ("already placed" + (f" at {result.placed_at}" if result.placed_at else "")
                  if result.outcome == "already_placed" else "offer already decided")
        raise HTTPException(409, detail)
    return DecisionResponse(outcome=result.outcome, case_status=result.case_status,
                            placed_at=result.placed_at)


@api.post("/cases/{case_id}/updates", response_model=CaseStatus)
def post_update(case_id: str, body: CaseUpdateV1, runtime: RuntimeDep) -> CaseStatus:
    """The ambulance's cancel, divert, patient, vitals or handover update
    (the same as the MQTT ``update`` topic)."""
    try:
        status = runtime.cases.update_case(case_id, body)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from exc
    runtime.outbox.flush()
    return status


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
    """Dispatch overview: alerts, cases, ambulances and ERs with capacity."""
    cases = [_case_public(session, c) for c in _active_first(session, 50)]
    stale = runtime.settings.capacity_stale_s
    return TEMPLATES.TemplateResponse(request, "dispatch.html", {
        "cases": cases,
        "alerts": [c for c in cases if c.status == CaseStatus.NO_ER_AVAILABLE],
        "ambulances": session.exec(select(Ambulance).order_by(col(Ambulance.id))).all(),
        "hospitals": [_hospital_public(h, stale)
                      for h in session.exec(select(Hospital).order_by(col(Hospital.id))).all()],
        "connected": runtime.communicator.connected,
        "notice": AI_NOTICE,
        "version": __version__,
    })


@pages.get("/er/{hospital_id}", response_class=HTMLResponse)
def er_page(hospital_id: str, request: Request, session: SessionDep, runtime: RuntimeDep,
            error: str | None = None) -> HTMLResponse:
    """An ER's console: its open offers with Accept and Decline, and its capacity."""
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
        "hospital": _hospital_public(hospital, runtime.settings.capacity_stale_s),
        "open_rows": open_rows, "closed_rows": closed_rows, "error": error,
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
    if decision == "decline" and not (reason and reason.strip()):
        return RedirectResponse(f"/er/{hospital_id}?error=Give+a+reason+to+decline",
                                status_code=303)
    result = _decide(runtime, case_id, hospital_id,
                     DecisionRequest(decision=decision, decided_by=decided_by, reason=reason))
    target = f"/er/{hospital_id}"
    if result.outcome == "already_placed":
        target += "?error=Already+placed+at+another+ER"
    return RedirectResponse(target, status_code=303)


@pages.post("/er/{hospital_id}/capacity")
def er_capacity_form(
    hospital_id: str,
    runtime: RuntimeDep,
    er_beds_free: Annotated[int, Form(ge=0, le=1000)],
    icu_beds_free: Annotated[int, Form(ge=0, le=1000)],
    accepting: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """The console's capacity form."""
    try:
        runtime.live.set_capacity(hospital_id, er_beds_free=er_beds_free,
                                  icu_beds_free=icu_beds_free, accepting=accepting,
                                  source="console")
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
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
