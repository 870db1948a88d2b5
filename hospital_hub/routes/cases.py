"""``/api/cases``: the case history, one case, its whole record (JSON and
PDF), its audit trail, and the ambulance's updates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import col, select

from hospital_hub.deps import (
    CaseReader,
    CaseUpdater,
    Overseer,
    ReadableCase,
    RuntimeDep,
    SecurityDep,
    SessionDep,
    client_address,
)
from hospital_hub.models import AccessLog, AccessLogPublic, CaseEvent, CasePublic, CaseStatus
from hospital_hub.records import CaseFilter, case_pdf, case_record, search_cases
from hospital_hub.schemas import CaseAudit, CasePage, QueryTime, UpdateBody, case_public
from shared.errors import CaseError, NotFound
from shared.findings import Finding

router = APIRouter(prefix="/cases")


@router.get("", response_model=CasePage)
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
    security.access.viewed(user, "cases_api", [c.id for c in cases], client_address(request))
    return CasePage(items=[case_public(session, c) for c in cases], total=total, limit=limit,
                    offset=offset)


@router.get("/{case_id}", response_model=CasePublic)
def get_case(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
             security: SecurityDep) -> CasePublic:
    """One case with its offers."""
    security.access.viewed(user, "case", [case.id], client_address(request))
    return case_public(session, case)


def scoped_record(record: dict[str, Any], hospital_id: str | None) -> dict[str, Any]:
    """What one ER may see of a record: its own offer, not how other ERs
    answered (their reasons and clinicians' names stay with them)."""
    if hospital_id is None:
        return record
    def own(item: dict[str, Any]) -> bool:
        return item.get("hospital_id") in (None, hospital_id)
    return {**record, "offers": [o for o in record["offers"] if own(o)],
            "events": [e for e in record["events"] if own(e)]}


@router.get("/{case_id}/record.json")
def get_record(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
               security: SecurityDep) -> dict[str, object]:
    """The whole record: patient, vitals, diagnoses, triage history, offers,
    handover and the audit trail."""
    security.access.viewed(user, "record.json", [case.id], client_address(request))
    return scoped_record(case_record(session, case.id), user.hospital_id)


@router.get("/{case_id}/record.pdf", response_class=Response)
def get_record_pdf(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                   security: SecurityDep) -> Response:
    """The whole record as a printable PDF."""
    data = case_pdf(scoped_record(case_record(session, case.id), user.hospital_id))
    security.access.viewed(user, "record.pdf", [case.id], client_address(request))
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="goldenhour-case-{case.id}.pdf"'})


@router.get("/{case_id}/audit", response_model=CaseAudit)
def get_audit(user: Overseer, case: ReadableCase, request: Request, session: SessionDep,
              security: SecurityDep) -> CaseAudit:
    """Who saw or changed the case, and when (admins and dispatchers)."""
    access = session.exec(select(AccessLog).where(AccessLog.case_id == case.id)
                          .order_by(col(AccessLog.at), col(AccessLog.id))).all()
    events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)
                          .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
    security.access.viewed(user, "audit", [case.id], client_address(request))
    return CaseAudit(case_id=case.id,
                     access=[AccessLogPublic.model_validate(a) for a in access],
                     events=[{"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor}
                             for e in events])


@router.post("/{case_id}/updates", response_model=CaseStatus)
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
    security.access.changed(user, "update", case_id=case_id, client=client_address(request),
                            update=body.action)
    runtime.outbox.flush()
    return status
