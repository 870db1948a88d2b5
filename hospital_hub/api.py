"""HTTP API and web pages of the hub (FastAPI). Every state change goes
through the same service layer as the MQTT handlers.

Every route but ``/health`` and the login page needs a signed-in user (a
session cookie from ``/login``) or a service client's bearer token; who may do
what is decided by the dependencies below and listed in
``docs/app-security.md`` (and checked, route by route, by
``tests/integration/test_auth.py``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, model_validator
from sqlmodel import Session, col, select

from hospital_hub import board, dicom_results, fhir, i18n, views
from hospital_hub.api_contract import (
    SWAGGER_ASSETS,
    DecisionBody,
    QueryTime,
    UpdateBody,
    add_html_errors,
    install_openapi,
    swagger_page,
)
from hospital_hub.auth import SESSION_COOKIE, HubSecurity, Principal, verify_password
from hospital_hub.cases import AI_NOTICE, DecisionResult
from hospital_hub.events import EventFeed, stream
from hospital_hub.live import CapacityError
from hospital_hub.models import (
    AccessLog,
    AccessLogPublic,
    Ambulance,
    AmbulancePublic,
    CapacityUpdate,
    Case,
    CaseDiagnosis,
    CaseEvent,
    CaseImage,
    CasePublic,
    CaseStatus,
    Hospital,
    HospitalPublic,
    Offer,
    OfferPublic,
    OfferState,
    utcnow,
)
from hospital_hub.ops import add_ops_routes
from hospital_hub.preview import PreviewError, render_preview
from hospital_hub.records import CaseFilter, case_pdf, case_record, search_cases
from hospital_hub.runtime import HubRuntime
from shared import __version__
from shared.errors import CaseError, DicomExportError, NotFound
from shared.findings import Finding

logger = logging.getLogger(__name__)


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC = Path(__file__).parent / "static"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_runtime(request: Request) -> HubRuntime:
    """The hub runtime that this app serves."""
    runtime: HubRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[HubRuntime, Depends(get_runtime)]


def get_security(request: Request) -> HubSecurity:
    """Session signing, the login limiter and the access log of this app."""
    security: HubSecurity = request.app.state.security
    return security


SecurityDep = Annotated[HubSecurity, Depends(get_security)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A read session per request."""
    with Session(runtime.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _same_origin(request: Request) -> bool:
    """A browser's cross-site form post carries a foreign ``Origin``; refuse it
    (on top of the SameSite=Lax cookie)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host")


def current_user(request: Request, session: SessionDep, security: SecurityDep) -> Principal | None:
    """The signed-in user (bearer token first, else session cookie), or None."""
    user = security.principal(session, request.headers.get("authorization"),
                              request.cookies.get(SESSION_COOKIE))
    session.rollback()  # end the read, so that the route sees the latest data (SQLite snapshots)
    if (user is not None and user.via == "session" and request.method not in SAFE_METHODS
            and not _same_origin(request)):
        raise HTTPException(403, "cross-site request refused")
    return user


MaybeUserDep = Annotated[Principal | None, Depends(current_user)]

# -- who may do what ---------------------------------------------------------------------------
# A user's "kind" is its role, with service clients split into "er_service"
# (bound to a hospital) and "ambulance" (bound to an ambulance).
EVERYONE = ("admin", "dispatcher", "er_doctor", "er_service", "ambulance")
CASE_READERS = ("admin", "dispatcher", "er_doctor", "er_service")
OVERSEERS = ("admin", "dispatcher")
ER_ACTORS = ("admin", "er_doctor", "er_service")
UPDATERS = ("admin", "ambulance")
PAGE_VIEWERS = ("admin", "dispatcher", "er_doctor")
PAGE_DECIDERS = ("admin", "er_doctor")


def _api_user(*kinds: str) -> Callable[[Principal | None], Principal]:
    """A dependency: 401 without a user, 403 for a user of another kind."""

    def dependency(user: MaybeUserDep) -> Principal:
        if user is None:
            raise HTTPException(401, "sign in, or send a service token as 'Authorization: Bearer'",
                                headers={"WWW-Authenticate": "Bearer"})
        if user.kind not in kinds:
            raise HTTPException(403, f"not allowed for the role {user.kind}")
        return user

    return dependency


def _page_user(*kinds: str) -> Callable[[Request, Principal | None], Principal]:
    """Like :func:`_api_user`, but an anonymous visitor is sent to the login page."""

    def dependency(request: Request, user: MaybeUserDep) -> Principal:
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, "sign in first",
                                headers={"Location": f"/login?next={quote(target, safe='')}"})
        if user.kind not in kinds:
            raise HTTPException(403, f"not allowed for the role {user.kind}")
        return user

    return dependency


AnyUser = Annotated[Principal, Depends(_api_user(*EVERYONE))]
CaseReader = Annotated[Principal, Depends(_api_user(*CASE_READERS))]
Overseer = Annotated[Principal, Depends(_api_user(*OVERSEERS))]
ErActor = Annotated[Principal, Depends(_api_user(*ER_ACTORS))]
Updater = Annotated[Principal, Depends(_api_user(*UPDATERS))]
PageAnyUser = Annotated[Principal, Depends(_page_user(*EVERYONE))]
PageViewer = Annotated[Principal, Depends(_page_user(*PAGE_VIEWERS))]
PageDecider = Annotated[Principal, Depends(_page_user(*PAGE_DECIDERS))]


def _own_hospital(user: Principal, hospital_id: str) -> None:
    """A user bound to a hospital sees no other: 404, as if it did not exist."""
    if user.hospital_id is not None and user.hospital_id != hospital_id:
        raise HTTPException(404, f"no hospital {hospital_id}")


def _scoped(kinds: Callable[..., Principal]) -> Callable[..., Principal]:
    """A dependency: the user of ``kinds``, and 404 for another ER's hospital."""

    def dependency(hospital_id: str, user: Principal) -> Principal:
        _own_hospital(user, hospital_id)
        return user

    # Set as an object: a string annotation could not see ``kinds`` (postponed evaluation).
    dependency.__annotations__["user"] = Annotated[Principal, Depends(kinds)]
    return dependency


HospitalReader = Annotated[Principal, Depends(_scoped(_api_user(*CASE_READERS)))]
HospitalActor = Annotated[Principal, Depends(_scoped(_api_user(*ER_ACTORS)))]
PageHospitalViewer = Annotated[Principal, Depends(_scoped(_page_user(*PAGE_VIEWERS)))]
PageHospitalDecider = Annotated[Principal, Depends(_scoped(_page_user(*PAGE_DECIDERS)))]


def can_see_case(session: Session, user: Principal, case: Case) -> bool:
    """Admins and dispatchers see every case; an ER's users only the cases
    offered to their ER; an ambulance only its own."""
    if user.sees_all:
        return True
    if user.ambulance_id is not None:
        return case.ambulance_id == user.ambulance_id
    if user.hospital_id is not None:
        return session.exec(select(Offer.id).where(
            Offer.case_id == case.id, Offer.hospital_id == user.hospital_id)).first() is not None
    return False


def readable_case(case_id: str, user: CaseReader, session: SessionDep) -> Case:
    """The case, if the user may see it; 404 otherwise (existence does not leak)."""
    case = session.get(Case, case_id)
    if case is None or not can_see_case(session, user, case):
        raise HTTPException(404, f"no case {case_id}")
    return case


ReadableCase = Annotated[Case, Depends(readable_case)]


def updatable_case(case_id: str, user: Updater, session: SessionDep) -> Principal:
    """An ambulance updates only its own cases (404 for others); admins any."""
    if user.ambulance_id is not None:
        case = session.get(Case, case_id)
        if case is None or case.ambulance_id != user.ambulance_id:
            raise HTTPException(404, f"no case {case_id}")
    return user


CaseUpdater = Annotated[Principal, Depends(updatable_case)]


# -- API shapes ---------------------------------------------------------------------------------
class DecisionRequest(BaseModel):
    """An ER's decision on an offer, from the console or an integration.

    ``decided_by`` is the signed-in user; an ER integration (service token)
    may name the clinician, recorded as ``<name> via <client>``."""

    decision: Literal["accept", "decline"]
    decided_by: str | None = Field(default=None, min_length=1, max_length=100)
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


class CaseAudit(BaseModel):
    """Who saw or changed a case: the access log and the case's own trail."""

    case_id: str
    access: list[AccessLogPublic]
    """Views and changes through the web pages and the API, oldest first."""
    events: list[dict[str, Any]]
    """The case's state changes (from any source: MQTT, API, housekeeping)."""


def _case_public(session: Session, case: Case) -> CasePublic:
    offers = session.exec(select(Offer).where(Offer.case_id == case.id).order_by(col(Offer.rank)))
    return CasePublic.model_validate(
        {**case.model_dump(), "offers": [OfferPublic.model_validate(o) for o in offers]}
    )


def _hospital_public(hospital: Hospital, stale_after_s: float) -> HospitalPublic:
    stale = (hospital.capacity_at is None
             or utcnow() - hospital.capacity_at > timedelta(seconds=stale_after_s))
    return HospitalPublic.model_validate({**hospital.model_dump(), "capacity_stale": stale})


def _decided_by(user: Principal, named: str | None) -> str:
    if user.via == "token" and named:
        return f"{named} via {user.username}"[:128]
    return user.username


api = APIRouter(prefix="/api", tags=["api"])


@api.get("/hospitals", response_model=list[HospitalPublic])
def list_hospitals(user: CaseReader, session: SessionDep, runtime: RuntimeDep) -> list[HospitalPublic]:
    """Every hospital in the registry with its live capacity (an ER's users: their own)."""
    stale = runtime.settings.capacity_stale_s
    query = select(Hospital).order_by(col(Hospital.id))
    if user.hospital_id is not None:
        query = query.where(Hospital.id == user.hospital_id)
    return [_hospital_public(h, stale) for h in session.exec(query).all()]


@api.get("/hospitals/{hospital_id}", response_model=HospitalPublic)
def get_hospital(hospital_id: str, user: HospitalReader, session: SessionDep,
                 runtime: RuntimeDep) -> HospitalPublic:
    """One hospital with its live capacity."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise HTTPException(404, f"no hospital {hospital_id}")
    return _hospital_public(hospital, runtime.settings.capacity_stale_s)


@api.put("/hospitals/{hospital_id}/capacity", response_model=HospitalPublic)
def put_capacity(hospital_id: str, user: HospitalActor, body: CapacityUpdate, request: Request,
                 runtime: RuntimeDep, session: SessionDep, security: SecurityDep) -> HospitalPublic:
    """Set an ER's free beds (the ER's own users, or an admin)."""
    _set_capacity(runtime, security, user, hospital_id, body, _client(request))
    return get_hospital(hospital_id, user, session, runtime)


@api.get("/hospitals/{hospital_id}/offers", response_model=list[OfferPublic])
def hospital_offers(hospital_id: str, user: HospitalReader, request: Request, session: SessionDep,
                    security: SecurityDep, state: OfferState | None = None) -> list[Offer]:
    """This hospital's offers, newest first (the latest 200; with ``state=open``: all)."""
    query = select(Offer).where(Offer.hospital_id == hospital_id)
    if state:
        query = query.where(Offer.state == state)
    limit = None if state == OfferState.OPEN else 200  # open offers: every one
    offers = list(session.exec(query.order_by(col(Offer.created_at).desc()).limit(limit)).all())
    security.access.viewed(user, "hospital_offers", [o.case_id for o in offers], _client(request),
                           hospital_id=hospital_id)
    return offers


@api.get("/ambulances", response_model=list[AmbulancePublic])
def list_ambulances(user: Overseer, session: SessionDep) -> list[Ambulance]:
    """Every ambulance the hub has heard from, with its last position."""
    return list(session.exec(select(Ambulance).order_by(col(Ambulance.id))).all())


@api.get("/cases", response_model=CasePage)
def list_cases(
    user: CaseReader,
    request: Request,
    session: SessionDep,
    security: SecurityDep,
    date_from: QueryTime | None = None,
    date_to: QueryTime | None = None,
    hospital_id: str | None = None,
    ambulance_id: str | None = None,
    severity: Annotated[int | None, Query(ge=1, le=5, description="triage level this severe "
                                                                  "or more")] = None,
    finding: Finding | None = None,
    status: CaseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CasePage:
    """The case history, newest first, with filters and pagination (an ER's
    users: only the cases offered to their ER)."""
    if user.hospital_id is not None:
        if hospital_id not in (None, user.hospital_id):
            return CasePage(items=[], total=0, limit=limit, offset=offset)
        hospital_id = user.hospital_id
    where = CaseFilter(date_from=date_from, date_to=date_to, hospital_id=hospital_id,
                       ambulance_id=ambulance_id, severity=severity, finding=finding,
                       status=status)
    cases, total = search_cases(session, where, limit=limit, offset=offset)
    security.access.viewed(user, "cases_api", [c.id for c in cases], _client(request))
    return CasePage(items=[_case_public(session, c) for c in cases], total=total, limit=limit,
                    offset=offset)


@api.get("/cases/{case_id}", response_model=CasePublic)
def get_case(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
             security: SecurityDep) -> CasePublic:
    """One case with its offers."""
    security.access.viewed(user, "case", [case.id], _client(request))
    return _case_public(session, case)


@api.get("/cases/{case_id}/record.json")
def get_record(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
               security: SecurityDep) -> dict[str, object]:
    """The whole record: patient, vitals, diagnoses, triage history, offers,
    handover and the audit trail."""
    security.access.viewed(user, "record.json", [case.id], _client(request))
    return _scoped_record(case_record(session, case.id), user.hospital_id)


def _scoped_record(record: dict[str, Any], hospital_id: str | None) -> dict[str, Any]:
    """What one ER may see of a record: its own offer, not how other ERs
    answered (their reasons and clinicians' names stay with them)."""
    if hospital_id is None:
        return record
    def own(item: dict[str, Any]) -> bool:
        return item.get("hospital_id") in (None, hospital_id)
    return {**record, "offers": [o for o in record["offers"] if own(o)],
            "events": [e for e in record["events"] if own(e)]}


@api.get("/cases/{case_id}/record.pdf", response_class=Response)
def get_record_pdf(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                   security: SecurityDep) -> Response:
    """The whole record as a printable PDF."""
    data = case_pdf(_scoped_record(case_record(session, case.id), user.hospital_id))
    security.access.viewed(user, "record.pdf", [case.id], _client(request))
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="goldenhour-case-{case.id}.pdf"'})


@api.get("/cases/{case_id}/thumbnail.jpg", response_class=Response)
def get_thumbnail(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                  security: SecurityDep) -> Response:
    """The latest X-ray thumbnail of the case."""
    diagnosis = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case.id)
                             .order_by(col(CaseDiagnosis.id).desc())).first()
    if diagnosis is None or not diagnosis.thumbnail_jpeg:
        raise HTTPException(404, f"no thumbnail for case {case.id}")
    security.access.viewed(user, "thumbnail", [case.id], _client(request))
    return Response(diagnosis.thumbnail_jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


@api.get("/cases/{case_id}/overlays/{finding}.jpg", response_class=Response,
         responses={200: {"content": {"image/jpeg": {}}}})
def get_overlay(finding: str, user: CaseReader, case: ReadableCase, request: Request,
                session: SessionDep, security: SecurityDep,
                diagnosis: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Response:
    """A top-3 finding's AI heat map blended over the X-ray (a small JPEG): where
    the model's evidence is, not a diagnosis. From the latest diagnosis, or the
    one whose id ``diagnosis`` names (as the record lists them); 404 when that
    diagnosis has no heat map for the finding (models without them, other findings)."""
    query = select(CaseDiagnosis).where(CaseDiagnosis.case_id == case.id)
    if diagnosis is not None:
        query = query.where(CaseDiagnosis.id == diagnosis)
    row = session.exec(query.order_by(col(CaseDiagnosis.id).desc())).first()
    data = views.overlay_jpeg(row.payload, finding) if row is not None else None
    if data is None:
        raise HTTPException(404, f"no heat map of {finding[:40]} for case {case.id}")
    security.access.viewed(user, "overlay", [case.id], _client(request))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@api.get("/cases/{case_id}/image", response_class=Response)
def get_image(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
              security: SecurityDep) -> Response:
    """The case's full-resolution image, once every chunk has arrived and been
    verified (404 until then, and after the retention has deleted it)."""
    image = session.exec(
        select(CaseImage).where(CaseImage.case_id == case.id, col(CaseImage.complete))
        .order_by(col(CaseImage.completed_at).desc(), col(CaseImage.id).desc())).first()
    if image is None or not image.data:
        raise HTTPException(404, f"no complete image for case {case.id}")
    security.access.viewed(user, "image", [case.id], _client(request))
    return Response(image.data, media_type=image.media_type, headers={
        "Cache-Control": "private, no-store", "X-Image-SHA256": image.image_sha256})


@api.get("/cases/{case_id}/preview.png", response_class=Response,
         responses={200: {"content": {"image/png": {}}}})
def get_preview(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                security: SecurityDep) -> Response:
    """The verified full image as an 8-bit grey PNG for the browser's viewer
    (DICOM rendered with its modality and VOI LUTs, MONOCHROME1 inverted);
    404 until the image is complete: the viewer shows the thumbnail meanwhile."""
    image = session.exec(
        select(CaseImage).where(CaseImage.case_id == case.id, col(CaseImage.complete))
        .order_by(col(CaseImage.completed_at).desc(), col(CaseImage.id).desc())).first()
    if image is None or not image.data:
        raise HTTPException(404, f"no complete image for case {case.id}")
    try:
        png = render_preview(image.data, image.media_type)
    except PreviewError as exc:
        logger.warning("image cannot be previewed", extra={"case_id": case.id, "error": str(exc)})
        raise HTTPException(404, f"the image of case {case.id} cannot be shown") from exc
    security.access.viewed(user, "preview", [case.id], _client(request))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@api.get("/cases/{case_id}/fhir", response_class=Response,
         responses={200: {"content": {fhir.MEDIA_TYPE: {}}}})
def get_fhir(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
             security: SecurityDep) -> Response:
    """The AI result as a FHIR R4B Bundle (``collection``): a preliminary
    DiagnosticReport, an Observation per finding above its threshold and one
    of the triage level, the patient, the model as a Device and the
    ImagingStudy; see docs/hospital-formats.md."""
    try:
        bundle = fhir.case_bundle(session, case)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    security.access.viewed(user, "fhir", [case.id], _client(request))
    return Response(bundle.model_dump_json(), media_type=fhir.MEDIA_TYPE,
                    headers={"Cache-Control": "private, no-store"})


def _dicom_download(kind: Literal["sr", "sc"], user: Principal, case: Case, request: Request,
                    session: Session, security: HubSecurity) -> Response:
    try:
        instance = dicom_results.case_instances(session, case, (kind,)).get(kind)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except DicomExportError as exc:
        logger.warning("DICOM result cannot be made", extra={"case_id": case.id, "error": str(exc)})
        raise HTTPException(404, f"no DICOM {kind} for case {case.id}: {exc}") from exc
    if instance is None:
        raise HTTPException(404, f"no heat map for case {case.id}")
    security.access.viewed(user, f"dicom_{kind}", [case.id], _client(request))
    return Response(instance.data, media_type="application/dicom", headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="goldenhour-{case.id}-{kind}.dcm"'})


@api.get("/cases/{case_id}/dicom/sr", response_class=Response,
         responses={200: {"content": {"application/dicom": {}}}})
def get_dicom_sr(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                 security: SecurityDep) -> Response:
    """The AI findings as a DICOM Comprehensive 3D SR (TID 1500) referencing
    the case's image, as pushed to the accepting ER's PACS; 404 until the
    full image has arrived."""
    return _dicom_download("sr", user, case, request, session, security)


@api.get("/cases/{case_id}/dicom/sc", response_class=Response,
         responses={200: {"content": {"application/dicom": {}}}})
def get_dicom_sc(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                 security: SecurityDep) -> Response:
    """The top finding's heat map as a DICOM Secondary Capture in the image's
    study; 404 until the full image has arrived, and for models without heat maps."""
    return _dicom_download("sc", user, case, request, session, security)


@api.get("/events", include_in_schema=False)
async def get_events(user: CaseReader, request: Request, runtime: RuntimeDep,
                     max_s: Annotated[float, Query(ge=0, le=3600)] = 300.0) -> StreamingResponse:
    """Server-sent events: one small JSON event per change the user may see
    (an ER's doctor: only cases offered to that ER), polled from the database
    every 0.5 s; the stream ends after ``max_s`` and the browser reconnects."""
    feed = EventFeed(runtime.engine, None if user.sees_all else user.hospital_id)
    return StreamingResponse(stream(feed, request.is_disconnected, max_s=max_s),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@api.get("/cases/{case_id}/audit", response_model=CaseAudit)
def get_audit(user: Overseer, case: ReadableCase, request: Request, session: SessionDep,
              security: SecurityDep) -> CaseAudit:
    """Who saw or changed the case, and when (admins and dispatchers)."""
    access = session.exec(select(AccessLog).where(AccessLog.case_id == case.id)
                          .order_by(col(AccessLog.at), col(AccessLog.id))).all()
    events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)
                          .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
    security.access.viewed(user, "audit", [case.id], _client(request))
    return CaseAudit(case_id=case.id,
                     access=[AccessLogPublic.model_validate(a) for a in access],
                     events=[{"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor}
                             for e in events])


@api.post("/cases/{case_id}/offers/{hospital_id}/decision", response_model=DecisionResponse)
def post_decision(
    case_id: str, hospital_id: str, user: HospitalActor, body: DecisionBody, request: Request,
    runtime: RuntimeDep, security: SecurityDep,
) -> DecisionResponse:
    """Accept or decline (with a reason) an offer to your ER; the ambulance is
    told at once. A late accept answers 409 "already placed"."""
    result = _decide(runtime, security, user, case_id, hospital_id,
                     DecisionRequest.model_validate(body.model_dump()), _client(request))
    if result.outcome in ("already_placed", "already_decided"):
        detail = ("already placed" + (f" at {result.placed_at}" if result.placed_at else "")
                  if result.outcome == "already_placed" else "offer already decided")
        raise HTTPException(409, detail)
    return DecisionResponse(outcome=result.outcome, case_status=result.case_status,
                            placed_at=result.placed_at)


@api.post("/cases/{case_id}/updates", response_model=CaseStatus)
def post_update(case_id: str, user: CaseUpdater, request_body: UpdateBody, request: Request,
                runtime: RuntimeDep, security: SecurityDep) -> CaseStatus:
    """The ambulance's cancel, divert, patient, vitals or handover update
    (the same as the MQTT ``update`` topic); an ambulance's token updates only
    that ambulance's cases."""
    body = request_body.message()
    if user.ambulance_id is not None and body.ambulance_id != user.ambulance_id:
        raise HTTPException(403, f"this token speaks for ambulance {user.ambulance_id}")
    try:
        status = runtime.cases.update_case(case_id, body)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from exc
    security.access.changed(user, "update", case_id=case_id, client=_client(request),
                            update=body.action)
    runtime.outbox.flush()
    return status


def _decide(runtime: HubRuntime, security: HubSecurity, user: Principal, case_id: str,
            hospital_id: str, body: DecisionRequest, client: str | None) -> DecisionResult:
    try:
        result = runtime.cases.decide(case_id, hospital_id, body.decision,
                                      decided_by=_decided_by(user, body.decided_by),
                                      reason=body.reason)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    security.access.changed(user, "decision", case_id=case_id, hospital_id=hospital_id,
                            client=client, decision=body.decision, outcome=result.outcome)
    runtime.outbox.flush()
    return result


def _set_capacity(runtime: HubRuntime, security: HubSecurity, user: Principal, hospital_id: str,
                  body: CapacityUpdate, client: str | None) -> None:
    try:
        runtime.live.set_capacity(hospital_id, er_beds_free=body.er_beds_free,
                                  icu_beds_free=body.icu_beds_free, accepting=body.accepting,
                                  source="console")
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CapacityError as exc:
        raise HTTPException(422, str(exc)) from exc
    security.access.changed(user, "capacity", hospital_id=hospital_id, client=client,
                            **body.model_dump())


# -- web pages --------------------------------------------------------------------------------
pages = APIRouter(include_in_schema=False)


def _lang(request: Request) -> str:
    return i18n.normalise(request.cookies.get(i18n.COOKIE))


def _render(request: Request, template: str, user: Principal | None, status_code: int = 200,
            headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    lang = _lang(request)
    return TEMPLATES.TemplateResponse(request, template, {
        "user": user, "notice": AI_NOTICE, "version": __version__, "lang": lang,
        "t": i18n.translator(lang), **context}, status_code=status_code, headers=headers)


def _home(user: Principal) -> str:
    """Where a user lands after signing in."""
    return f"/er/{user.hospital_id}" if user.kind == "er_doctor" else "/"


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site (no scheme, host or ``//``) may follow a sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: MaybeUserDep, next: str | None = None) -> HTMLResponse:
    """The sign-in form."""
    return _render(request, "login.html", user, next=_safe_next(next) or "", error=None)


@pages.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    security: SecurityDep,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """Check the password and set the session cookie; at most
    ``login_max_failures`` failures per name and per address in
    ``login_window_s``, then 429 with ``Retry-After``."""
    client = _client(request) or "unknown"
    wait = security.limiter.attempt(username, client)
    if wait is not None:
        logger.warning("sign-in refused: too many failures", extra={"username": username,
                                                                   "client": client})
        security.access.event(username, "-", "login_refused", client)
        return _render(request, "login.html", None, status_code=429,
                       headers={"Retry-After": str(wait)}, next=_safe_next(next) or "",
                       error=i18n.translate(_lang(request), "login.too_many", wait=wait))
    stored = verify_password(security.engine, username, password)
    if stored is None:  # already counted by attempt()
        logger.info("sign-in failed", extra={"username": username, "client": client})
        security.access.event(username, "-", "login_failed", client)
        return _render(request, "login.html", None, status_code=401, next=_safe_next(next) or "",
                       error=i18n.translate(_lang(request), "login.wrong"))
    security.limiter.succeeded(username, client)
    user = Principal.of(stored, "session")
    logger.info("signed in", extra={"username": user.username, "role": user.kind, "client": client})
    security.access.event(user.username, user.kind, "login", client)
    response = RedirectResponse(_safe_next(next) or _home(user), status_code=303)
    response.set_cookie(SESSION_COOKIE, security.signer.sign(stored),
                        max_age=int(security.signer.max_age_s), httponly=True, samesite="lax",
                        secure=security.cookie_secure, path="/")
    return response


@pages.post("/logout")
def logout(request: Request, user: MaybeUserDep, security: SecurityDep) -> RedirectResponse:
    """Sign out: the session cookie is removed."""
    if user is not None:
        security.access.event(user.username, user.kind, "logout", _client(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@pages.post("/lang")
def set_language(request: Request, lang: Annotated[str, Form(max_length=8)],
                 next: Annotated[str | None, Form(max_length=500)] = None) -> RedirectResponse:
    """The language toggle: sets the ``lang`` cookie (English or Korean) and goes back."""
    if not _same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    response = RedirectResponse(_safe_next(next) or "/", status_code=303)
    response.set_cookie(i18n.COOKIE, i18n.normalise(lang), max_age=365 * 24 * 3600,
                        samesite="lax", path="/")
    return response


def _hospitals(session: Session, runtime: HubRuntime) -> list[HospitalPublic]:
    stale = runtime.settings.capacity_stale_s
    return [_hospital_public(h, stale)
            for h in session.exec(select(Hospital).order_by(col(Hospital.id))).all()]


@pages.get("/", response_class=HTMLResponse)
def dispatch_page(request: Request, user: PageViewer, session: SessionDep, runtime: RuntimeDep,
                  security: SecurityDep) -> Response:
    """Dispatch board: escalations, active cases with timers, a map of ERs and
    ambulances, capacities (an ER doctor is sent to the ER's console)."""
    if user.kind == "er_doctor":
        return RedirectResponse(_home(user), status_code=303)
    shown = board.dispatch_rows(session)  # every unresolved case, never cut at a row limit
    cases = shown["cases"]
    security.access.viewed(user, "dispatch_page", [c.id for c in cases], _client(request))
    hospitals = _hospitals(session, runtime)
    ambulances = list(session.exec(select(Ambulance).order_by(col(Ambulance.id))).all())
    return _render(request, "dispatch.html", user, **shown, **{
        "ambulances": ambulances, "hospitals": hospitals,
        "markers": views.map_markers(hospitals, ambulances, cases),
        "connected": runtime.communicator.connected,
    })


def _day(value: str | None, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` from a date field as the start (or end) of that UTC day."""
    if not value:
        return None
    try:
        day = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return day + timedelta(days=1) - timedelta(microseconds=1) if end else day
    except (ValueError, OverflowError):
        return None


@pages.get("/cases", response_class=HTMLResponse)
def history_page(
    request: Request, user: PageViewer, session: SessionDep, runtime: RuntimeDep,
    security: SecurityDep,
    date_from: Annotated[str | None, Query(max_length=10)] = None,
    date_to: Annotated[str | None, Query(max_length=10)] = None,
    hospital_id: Annotated[str | None, Query(max_length=64)] = None,
    ambulance_id: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[str | None, Query(max_length=1)] = None,
    finding: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> HTMLResponse:
    """The case history with filters (an ER's doctor: only cases offered to that ER)."""
    scope = user.hospital_id if user.hospital_id is not None else (hospital_id or None)
    where = CaseFilter(
        date_from=_day(date_from), date_to=_day(date_to, end=True), hospital_id=scope,
        ambulance_id=ambulance_id or None,
        severity=int(severity) if severity and severity in "12345" else None,
        finding=Finding(finding) if finding in set(Finding) else None,
        status=CaseStatus(status) if status in set(CaseStatus) else None)
    cases, total = search_cases(session, where, limit=200)
    security.access.viewed(user, "history_page", [c.id for c in cases], _client(request))
    return _render(request, "history.html", user, **{
        "cases": [_case_public(session, c) for c in cases], "total": total,
        "hospitals": _hospitals(session, runtime) if user.sees_all else [],
        "findings": [str(f) for f in Finding], "statuses": [s.value for s in CaseStatus],
        "f": {"date_from": date_from, "date_to": date_to, "hospital_id": hospital_id,
              "ambulance_id": ambulance_id, "severity": severity, "finding": finding,
              "status": status},
    })


ERROR_CODES = frozenset({"reason_needed", "already_placed", "already_decided"})


@pages.get("/er/{hospital_id}", response_class=HTMLResponse)
def er_page(hospital_id: str, user: PageHospitalViewer, request: Request, session: SessionDep,
            runtime: RuntimeDep, security: SecurityDep, error: str | None = None) -> HTMLResponse:
    """An ER's console: its open offers, most severe first, with countdowns,
    Accept and Decline, and its capacity (dispatchers see it read-only)."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise HTTPException(404, f"no hospital {hospital_id}")
    shown = board.er_rows(session, hospital, runtime.cases.router)  # every open offer
    security.access.viewed(user, "er_page", shown.pop("case_ids"), _client(request),
                           hospital_id=hospital_id)
    return _render(request, "er.html", user, **shown, **{
        "hospital": _hospital_public(hospital, runtime.settings.capacity_stale_s),
        "error": error if error in ERROR_CODES else None,
        "can_act": user.kind in PAGE_DECIDERS,
    })


@pages.get("/er/{hospital_id}/cases/{case_id}", response_class=HTMLResponse)
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
    security.access.viewed(user, "case_page", [case.id], _client(request), hospital_id=hospital_id)
    details = views.case_details(session, case)
    t = i18n.translator(_lang(request))
    viewer = {"case_id": case.id, "regions": details["regions"],
              "preview": f"/api/cases/{case.id}/preview.png",
              "thumbnail": f"/api/cases/{case.id}/thumbnail.jpg",
              "heatmaps": [{"finding": h["finding"], "url": h["url"]} for h in details["heatmaps"]],
              "sources": {"heatmap": t("source.heatmap"), "detector": t("source.detector"),
                          "": t("source.unknown")}}
    eta = (board.live_eta(session, case, hospital, runtime.cases.router)
           if case.status == CaseStatus.ACCEPTED and case.accepted_hospital_id == hospital_id
           else None)
    return _render(request, "case.html", user, **{
        "hospital": _hospital_public(hospital, runtime.settings.capacity_stale_s),
        "case": case, "offer": offer, "details": details, "viewer": viewer, "eta": eta,
        "error": error if error in ERROR_CODES else None,
        "can_act": user.kind in PAGE_DECIDERS,
    })


@pages.post("/er/{hospital_id}/cases/{case_id}/decision")
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
    """The console's Accept / Decline buttons (on the list and the case view)."""
    back = f"/er/{hospital_id}"
    if next in (back, f"{back}/cases/{case_id}"):
        back = next
    if decision == "decline" and not (reason and reason.strip()):
        return RedirectResponse(f"{back}?error=reason_needed", status_code=303)
    result = _decide(runtime, security, user, case_id, hospital_id,
                     DecisionRequest(decision=decision, reason=reason), _client(request))
    if result.outcome in ("already_placed", "already_decided"):
        back += f"?error={result.outcome}"
    return RedirectResponse(back, status_code=303)


@pages.post("/er/{hospital_id}/capacity")
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
    _set_capacity(runtime, security, user, hospital_id, body, _client(request))
    return RedirectResponse(f"/er/{hospital_id}", status_code=303)


@pages.get("/docs", response_class=HTMLResponse)
def api_docs(user: PageAnyUser) -> HTMLResponse:
    """The interactive API documentation (signed-in users)."""
    return swagger_page()  # its assets ship with the package: works offline


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
                  description=f"Routes ambulance chest X-ray cases to ERs. {AI_NOTICE}. "
                              "Sign in at /login, or send a service client's token as "
                              "'Authorization: Bearer <token>'.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.state.security = HubSecurity(runtime.settings, runtime.engine)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, object]:
        """Liveness and the figures an operator looks at first (no sign-in needed)."""
        return {
            "status": "ok" if runtime.communicator.connected else "degraded",
            "broker_connected": runtime.communicator.connected,
            "outbox_pending": runtime.outbox.pending(),
            "rejected_messages": dict(runtime.messenger.rejected),
            "version": __version__,
        }

    add_ops_routes(app, runtime)  # /health/live, /health/ready, /metrics

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: AnyUser) -> dict[str, Any]:
        """The OpenAPI schema (signed-in users and service clients)."""
        return app.openapi()

    from hospital_hub.dispatch_routes import router as dispatch_routes  # they import this module
    from hospital_hub.model_updates import router as model_updates
    from hospital_hub.verdict_routes import install as install_verdicts

    app.include_router(api)
    app.include_router(model_updates)
    install_verdicts(app, runtime)  # ER verdicts, /performance (hospital_hub/verdict_routes.py)
    app.include_router(dispatch_routes)
    app.include_router(pages)
    install_openapi(app)  # bearer auth and the error answers in the schema
    add_html_errors(app, lambda request, status, detail: _render(
        request, "error.html", None, status_code=status, status=status, detail=detail))
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER_ASSETS), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
