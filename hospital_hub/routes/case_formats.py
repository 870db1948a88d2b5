"""A case's AI result in the hospital's formats: a FHIR R4B bundle, a DICOM
SR (TID 1500) and a heat-map Secondary Capture (docs/hospital-formats.md)."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response
from sqlmodel import Session

from hospital_hub import dicom_results, fhir
from hospital_hub.auth import HubSecurity, Principal
from hospital_hub.deps import CaseReader, ReadableCase, SecurityDep, SessionDep, client_address
from hospital_hub.models import Case
from shared.errors import DicomExportError, NotFound

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/cases/{case_id}")


@router.get("/fhir", response_class=Response, responses={200: {"content": {fhir.MEDIA_TYPE: {}}}})
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
    security.access.viewed(user, "fhir", [case.id], client_address(request))
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
    security.access.viewed(user, f"dicom_{kind}", [case.id], client_address(request))
    return Response(instance.data, media_type="application/dicom", headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="goldenhour-{case.id}-{kind}.dcm"'})


@router.get("/dicom/sr", response_class=Response,
            responses={200: {"content": {"application/dicom": {}}}})
def get_dicom_sr(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                 security: SecurityDep) -> Response:
    """The AI findings as a DICOM Comprehensive 3D SR (TID 1500) referencing
    the case's image, as pushed to the accepting ER's PACS; 404 until the
    full image has arrived."""
    return _dicom_download("sr", user, case, request, session, security)


@router.get("/dicom/sc", response_class=Response,
            responses={200: {"content": {"application/dicom": {}}}})
def get_dicom_sc(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                 security: SecurityDep) -> Response:
    """The top finding's heat map as a DICOM Secondary Capture in the image's
    study; 404 until the full image has arrived, and for models without heat maps."""
    return _dicom_download("sc", user, case, request, session, security)
