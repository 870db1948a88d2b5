"""Routes of the ER's verdict and of the field-performance page.

- ``GET/PUT /api/cases/{case_id}/verdict``: machine clients (an ER's service
  token) and signed-in users; only the doctors and integrations of an ER the
  case was offered to, and admins, may judge; dispatchers read.
- ``POST /er/{hospital_id}/cases/{case_id}/verdict``: the case view's form.
- ``GET /performance`` and ``GET /api/performance``: PPV, sensitivity,
  drift and the edges' refusal rate, for dispatchers and admins.

:func:`install` adds them, the case view's verdict panel and the Prometheus
gauges to an app (``api.create_app`` calls it).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session, col, select

from hospital_hub import intake, performance, verdicts
from hospital_hub.auth import Principal
from hospital_hub.deps import (
    CaseReader,
    Overseer,
    PageHospitalDecider,
    ReadableCase,
    RuntimeDep,
    SecurityDep,
    SessionDep,
)
from hospital_hub.deps import api_user as _api_user
from hospital_hub.deps import client_address as _client
from hospital_hub.deps import page_user as _page_user
from hospital_hub.models import Offer
from hospital_hub.pages.render import TEMPLATES
from hospital_hub.pages.render import render as _render
from hospital_hub.runtime import HubRuntime
from hospital_hub.verdict_models import (
    DriftAlert,
    DriftAlertPublic,
    Judgement,
    VerdictCreate,
    VerdictPublic,
)
from shared.errors import CaseError, NotFound
from shared.findings import Finding

logger = logging.getLogger(__name__)

JUDGES = ("admin", "er_doctor", "er_service")
Judge = Annotated[Principal, Depends(_api_user(*JUDGES))]
PageOverseer = Annotated[Principal, Depends(_page_user("admin", "dispatcher"))]

router = APIRouter()


def _judged_by(user: Principal, named: str | None) -> str:
    if user.via == "token" and named:
        return f"{named} via {user.username}"[:128]
    return user.username


def _save(runtime: HubRuntime, user: Principal, case_id: str, body: VerdictCreate,
          security: Any, client: str | None) -> VerdictPublic:
    try:
        result = verdicts.record_verdict(runtime.engine, case_id, body,
                                         judged_by=_judged_by(user, body.decided_by),
                                         hospital_id=user.hospital_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except CaseError as exc:
        raise HTTPException(422, str(exc)) from exc
    security.access.changed(user, "verdict", case_id=case_id, hospital_id=user.hospital_id,
                            client=client, diagnosis_id=result.diagnosis_id,
                            complete=result.complete)
    return result


@router.get("/api/cases/{case_id}/verdict", response_model=list[VerdictPublic], tags=["api"])
def get_verdicts(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                 security: SecurityDep) -> list[VerdictPublic]:
    """The ER verdicts on this case's diagnoses, newest first (an ER's users: their ER's)."""
    rows = verdicts.case_verdicts(session, case.id, None if user.sees_all else user.hospital_id)
    security.access.viewed(user, "verdict", [case.id], _client(request))
    return [verdicts.public(v) for v in rows]


@router.put("/api/cases/{case_id}/verdict", response_model=VerdictPublic, tags=["api"])
def put_verdict(user: Judge, case: ReadableCase, body: VerdictCreate, request: Request,
                runtime: RuntimeDep, security: SecurityDep) -> VerdictPublic:
    """Judge the case's latest AI diagnosis, finding by finding: ``confirmed``,
    ``refuted`` or ``not_assessed`` (left out: not assessed), and ``added``:
    findings the AI did not suspect but the ER found. Replaces this ER's
    earlier verdict on the same diagnosis; ER doctors and integrations of an ER
    the case was offered to, and admins."""
    return _save(runtime, user, case.id, body, security, _client(request))


@router.post("/er/{hospital_id}/cases/{case_id}/verdict", include_in_schema=False)
async def er_verdict_form(hospital_id: str, case_id: str, user: PageHospitalDecider,
                          request: Request, runtime: RuntimeDep, security: SecurityDep,
                          session: SessionDep) -> RedirectResponse:
    """The case view's verdict form: one ``j_<Finding>`` field per finding."""
    if session.exec(select(Offer.id).where(Offer.case_id == case_id,
                                           Offer.hospital_id == hospital_id)).first() is None:
        raise HTTPException(404, f"no case {case_id}")
    form = await request.form()
    try:
        body = VerdictCreate(judgements={
            Finding(str(key)[2:]): Judgement(str(value)) for key, value in form.items()
            if str(key).startswith("j_") and str(key)[2:] in set(Finding)})
    except (ValueError, ValidationError) as exc:
        raise HTTPException(422, "each finding is confirmed, refuted or not_assessed") from exc
    _save(runtime, user, case_id, body, security, _client(request))
    return RedirectResponse(f"/er/{hospital_id}/cases/{case_id}#verdict", status_code=303)


@router.get("/api/performance", tags=["api"])
def get_performance(user: Overseer, session: SessionDep) -> dict[str, Any]:
    """PPV and sensitivity per finding from the ER verdicts (per model version,
    and per model version and ambulance) with counts and Wilson 95% intervals,
    each device's drift (PSI per finding against the model's validation
    distribution), the drift alerts, and the share of images each model version and
    ambulance refused as not a chest radiograph (from the edges' reported counts,
    Wilson 95% intervals); see docs/field-performance.md."""
    return {**performance.field_performance(session),
            "drift": [_drift_row(d) for d in performance.device_drift(
                session, performance.manifest_references())],
            "alerts": [DriftAlertPublic.model_validate(a).model_dump(mode="json")
                       for a in _alerts(session)],
            "refusals": intake.refusal_figures(session),
            "thresholds": {"window": performance.WINDOW, "min_cases": performance.MIN_CASES,
                           "psi_alert": performance.PSI_ALERT}}


def _alerts(session: Session) -> list[DriftAlert]:
    return list(session.exec(select(DriftAlert).order_by(col(DriftAlert.id).desc()).limit(50)).all())


def _drift_row(d: performance.DeviceDrift) -> dict[str, Any]:
    worst = d.worst
    return {"ambulance_id": d.ambulance_id, "model": performance.model_key(d.model_name, d.model_version),
            "cases": d.cases, "status": d.status, "psi": d.psi,
            "worst_finding": worst[0] if worst else None, "worst_psi": worst[1] if worst else None}


@router.get("/performance", response_class=HTMLResponse, include_in_schema=False)
def performance_page(request: Request, user: PageOverseer, session: SessionDep) -> HTMLResponse:
    """The field-performance page for dispatchers and admins."""
    figures = get_performance(user, session)
    return _render(request, "performance.html", user, perf=figures)


def verdict_panel(request: Request, case_id: str, hospital_id: str,
                  user: Principal | None) -> dict[str, Any]:
    """What the case view's verdict form shows (a template global, so the case
    view's route needs no change)."""
    runtime: HubRuntime = request.app.state.runtime
    with Session(runtime.engine) as session:
        diagnosis = verdicts.latest_diagnosis(session, case_id)
        if diagnosis is None or diagnosis.id is None:
            return {"rows": [], "verdict": None, "can_judge": False, "model": None}
        whose = (user.hospital_id if user is not None and user.hospital_id
                 else None if user is not None and user.kind == "admin" else hospital_id)
        verdict = verdicts.find_verdict(session, diagnosis.id, whose)
        return {"rows": verdicts.form_rows(diagnosis, verdict),
                "verdict": verdicts.public(verdict) if verdict else None,
                "can_judge": user is not None and user.kind in ("admin", "er_doctor"),
                "model": {"name": diagnosis.model_name, "version": diagnosis.model_version,
                          "sha256": diagnosis.model_sha256 or ""},
                "judgements": [j.value for j in Judgement]}


def install(app: FastAPI, runtime: HubRuntime) -> None:
    """Add the verdict and performance routes, the case view's verdict panel
    and the field-performance gauges to ``app``."""
    TEMPLATES.env.globals["verdict_panel"] = verdict_panel
    app.include_router(router)
    runtime.metrics.registry.register(performance.FieldPerformanceCollector(runtime.engine))
    runtime.metrics.registry.register(intake.IntakeCollector(runtime.engine))
