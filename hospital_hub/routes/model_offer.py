"""``/api/models``: the signed model release on offer and its files, for
ambulances (a service client bound to an ambulance, with its API token) and
admins. The hub only relays; publishing is :mod:`hospital_hub.model_updates`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response

from hospital_hub.auth import Principal
from hospital_hub.deps import RuntimeDep, api_user, client_address
from hospital_hub.model_updates import OFFER_FILE, current_offer
from hospital_hub.runtime import HubRuntime
from shared.errors import ModelUpdateError
from shared.signing import SAFE_SEGMENT, parse_release

logger = logging.getLogger(__name__)

MODEL_READERS = ("admin", "ambulance")
ModelReader = Annotated[Principal, Depends(api_user(*MODEL_READERS))]

router = APIRouter(prefix="/api/models", tags=["models"])


def _offer_dir(runtime: HubRuntime) -> Path:
    folder = runtime.settings.model_offer_dir
    if folder is None:
        raise HTTPException(404, "this hub offers no model updates")
    return folder


@router.get("/offer", response_class=Response,
            responses={200: {"content": {"application/json": {}},
                             "description": "The signed release on offer (release.json)."}})
def get_offer(user: ModelReader, request: Request, runtime: RuntimeDep) -> Response:
    """The signed model release on offer, byte for byte as published (ambulances and admins)."""
    path = _offer_dir(runtime) / OFFER_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise HTTPException(404, "no model release on offer") from exc
    try:
        parse_release(data)
    except ModelUpdateError as exc:
        logger.error("the model offer is not a release", extra={"path": str(path), "error": str(exc)})
        raise HTTPException(503, "the model offer is unreadable") from exc
    logger.info("model offer fetched", extra={"username": user.username,
                                              "client": client_address(request)})
    return Response(content=data, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/files/{name}/{version}/{filename}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "The file's bytes."}})
def get_model_file(name: str, version: str, filename: str, user: ModelReader,
                   runtime: RuntimeDep) -> FileResponse:
    """One file of the release on offer; only files that the offer lists are served."""
    folder = _offer_dir(runtime)
    if not all(SAFE_SEGMENT.match(part) for part in (name, version, filename)):
        raise HTTPException(404, "no such model file")
    try:
        offer = current_offer(folder)
        listed = offer is not None and any(
            file.path == f"{name}/{version}/{filename}"
            for entry in offer.models() for file in entry.files)
    except ModelUpdateError as exc:
        raise HTTPException(503, "the model offer is unreadable") from exc
    root = folder.resolve()
    path = (root / name / version / filename).resolve()
    if not listed or not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such model file")
    logger.info("model file fetched", extra={"username": user.username,
                                             "file": f"{name}/{version}/{filename}"})
    return FileResponse(path, media_type="application/octet-stream")
