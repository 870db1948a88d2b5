"""The dispatch board and the case history page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import col, select

from hospital_hub import board, views
from hospital_hub.deps import PageViewer, RuntimeDep, SecurityDep, SessionDep, client_address
from hospital_hub.models import Ambulance, CaseStatus
from hospital_hub.pages.render import home, render
from hospital_hub.records import CaseFilter, search_cases
from hospital_hub.schemas import all_hospitals, case_public
from shared.findings import Finding

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dispatch_page(request: Request, user: PageViewer, session: SessionDep, runtime: RuntimeDep,
                  security: SecurityDep) -> Response:
    """Dispatch board: escalations, active cases with timers, a map of ERs and
    ambulances, capacities (an ER doctor is sent to the ER's console)."""
    if user.kind == "er_doctor":
        return RedirectResponse(home(user), status_code=303)
    shown = board.dispatch_rows(session)  # every unresolved case, never cut at a row limit
    cases = shown["cases"]
    security.access.viewed(user, "dispatch_page", [c.id for c in cases], client_address(request))
    hospitals = all_hospitals(session, runtime.settings.capacity_stale_s)
    ambulances = list(session.exec(select(Ambulance).order_by(col(Ambulance.id))).all())
    return render(request, "dispatch.html", user, **shown, **{
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


@router.get("/cases", response_class=HTMLResponse)
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
    security.access.viewed(user, "history_page", [c.id for c in cases], client_address(request))
    return render(request, "history.html", user, **{
        "cases": [case_public(session, c) for c in cases], "total": total,
        "hospitals": (all_hospitals(session, runtime.settings.capacity_stale_s)
                      if user.sees_all else []),
        "findings": [str(f) for f in Finding], "statuses": [s.value for s in CaseStatus],
        "f": {"date_from": date_from, "date_to": date_to, "hospital_id": hospital_id,
              "ambulance_id": ambulance_id, "severity": severity, "finding": finding,
              "status": status},
    })
