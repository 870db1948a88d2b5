"""A case's pictures: the thumbnail, the AI heat maps over the X-ray, the
full-resolution image and its browser preview."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import Session, col, select

from hospital_hub import views
from hospital_hub.deps import CaseReader, ReadableCase, SecurityDep, SessionDep, client_address
from hospital_hub.models import Case, CaseDiagnosis, CaseImage
from hospital_hub.preview import PreviewError, render_preview

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/cases/{case_id}")
NO_STORE = {"Cache-Control": "private, no-store"}


@router.get("/thumbnail.jpg", response_class=Response)
def get_thumbnail(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                  security: SecurityDep) -> Response:
    """The latest X-ray thumbnail of the case."""
    diagnosis = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case.id)
                             .order_by(col(CaseDiagnosis.id).desc())).first()
    if diagnosis is None or not diagnosis.thumbnail_jpeg:
        raise HTTPException(404, f"no thumbnail for case {case.id}")
    security.access.viewed(user, "thumbnail", [case.id], client_address(request))
    return Response(diagnosis.thumbnail_jpeg, media_type="image/jpeg", headers=NO_STORE)


@router.get("/overlays/{finding}.jpg", response_class=Response,
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
    security.access.viewed(user, "overlay", [case.id], client_address(request))
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


def _complete_image(session: Session, case: Case) -> CaseImage:
    """The case's latest verified full image; 404 until one is complete."""
    image = session.exec(
        select(CaseImage).where(CaseImage.case_id == case.id, col(CaseImage.complete))
        .order_by(col(CaseImage.completed_at).desc(), col(CaseImage.id).desc())).first()
    if image is None or not image.data:
        raise HTTPException(404, f"no complete image for case {case.id}")
    return image


@router.get("/image", response_class=Response)
def get_image(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
              security: SecurityDep) -> Response:
    """The case's full-resolution image, once every chunk has arrived and been
    verified (404 until then, and after the retention has deleted it)."""
    image = _complete_image(session, case)
    security.access.viewed(user, "image", [case.id], client_address(request))
    return Response(image.data, media_type=image.media_type, headers={
        **NO_STORE, "X-Image-SHA256": image.image_sha256})


@router.get("/preview.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def get_preview(user: CaseReader, case: ReadableCase, request: Request, session: SessionDep,
                security: SecurityDep) -> Response:
    """The verified full image as an 8-bit grey PNG for the browser's viewer
    (DICOM rendered with its modality and VOI LUTs, MONOCHROME1 inverted);
    404 until the image is complete: the viewer shows the thumbnail meanwhile."""
    image = _complete_image(session, case)
    try:
        png = render_preview(image.data, image.media_type)
    except PreviewError as exc:
        logger.warning("image cannot be previewed", extra={"case_id": case.id, "error": str(exc)})
        raise HTTPException(404, f"the image of case {case.id} cannot be shown") from exc
    security.access.viewed(user, "preview", [case.id], client_address(request))
    return Response(png, media_type="image/png", headers=NO_STORE)
