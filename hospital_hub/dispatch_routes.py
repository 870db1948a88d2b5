"""Dispatch's "re-offer now": a case that no ER took is ranked afresh and
offered once ERs have reopened (the API for integrations, a form for the
board). Admins and dispatchers only; every attempt is in the access log and
the case's audit trail. And the dispatch alerts heard on the broker, which the
board shows as they come (:mod:`hospital_hub.dispatch_alerts`)."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from hospital_hub.api_contract import ERRORS
from hospital_hub.auth import HubSecurity, Principal
from hospital_hub.deps import Overseer, PageViewer, RuntimeDep, SecurityDep
from hospital_hub.deps import client_address as _client
from hospital_hub.models import CaseStatus
from hospital_hub.runtime import HubRuntime
from shared.errors import CaseError, NotFound

logger = logging.getLogger(__name__)


ALERT_POLL_MS = 2000
"""How often the board asks for new dispatch alerts; five times slower while
this worker is overloaded (dashboards wait, cases do not)."""


class DispatchAlerts(BaseModel):
    """Dispatch alerts after ``after``, oldest first, and when to ask again."""

    alerts: list[dict[str, Any]]
    last: int
    """Ask with ``after=last`` next time."""
    retry_ms: int


class ReofferResult(BaseModel):
    """The ERs the case is now offered to, and its status."""

    offered_to: list[str]
    case_status: CaseStatus


def _reoffer(runtime: HubRuntime, security: HubSecurity, user: Principal, case_id: str,
             client: str | None) -> list[str]:
    try:
        added = runtime.cases.reoffer(case_id, actor=user.username)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from exc
    security.access.changed(user, "reoffer", case_id=case_id, client=client, offered_to=added)
    runtime.outbox.flush()
    return added


router = APIRouter()


@router.post("/api/cases/{case_id}/reoffer", response_model=ReofferResult, tags=["api"],
             responses={k: ERRORS[k] for k in (401, 403, 404, 409)})
def reoffer_case(case_id: str, user: Overseer, request: Request, runtime: RuntimeDep,
                 security: SecurityDep) -> ReofferResult:
    """Offer a ``no_er_available`` case again, ranked afresh (ERs that declined
    it stay out; those whose offer expired are asked again); 409 when the case
    is not waiting for an ER or no ER can take it now."""
    added = _reoffer(runtime, security, user, case_id, _client(request))
    if not added:
        raise HTTPException(409, "no ER can take the case now (closed, full or declined)")
    return ReofferResult(offered_to=added, case_status=CaseStatus.OFFERED)


@router.post("/cases/{case_id}/reoffer", include_in_schema=False)
def reoffer_form(case_id: str, user: PageViewer, request: Request, runtime: RuntimeDep,
                 security: SecurityDep) -> RedirectResponse:
    """The board's "re-offer now" button; back to the board with the outcome
    (a cross-site post is refused by the sign-in check)."""
    if user.kind not in ("admin", "dispatcher"):
        raise HTTPException(403, f"not allowed for the role {user.kind}")
    try:
        added = _reoffer(runtime, security, user, case_id, _client(request))
        outcome = "offered" if added else "none"
    except HTTPException as exc:
        if exc.status_code == 404:
            raise
        outcome = "not_waiting"
    return RedirectResponse(f"/?reoffer={outcome}&case={quote(case_id, safe='')}",
                            status_code=303)


@router.get("/api/dispatch/alerts", response_model=DispatchAlerts, tags=["api"],
            responses={k: ERRORS[k] for k in (401, 403)})
def dispatch_alerts(user: Overseer, runtime: RuntimeDep,
                    after: Annotated[int, Query(ge=0)] = 0) -> DispatchAlerts:
    """Dispatch alerts this hub process heard since it started (a case no ER
    accepted, an ambulance's AI drifting), those after ``after``; the board
    polls this every ``retry_ms``."""
    alerts = runtime.alerts.after(after)
    return DispatchAlerts(alerts=[a.public() for a in alerts],
                          last=alerts[-1].seq if alerts else max(after, 0),
                          retry_ms=ALERT_POLL_MS * (5 if runtime.overloaded else 1))
