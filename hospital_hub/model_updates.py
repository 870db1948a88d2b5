"""The hub's model offer: the signed release that edges poll for, and its files.

``goldenhour models publish`` copies a release and its files into the offer
folder (``GOLDENHOUR_HUB_MODEL_OFFER_DIR``)::

    <offer dir>/offer.json                      the current release (signed)
    <offer dir>/<name>/<version>/<file>         its files

The routes serve them to ambulances (a service client bound to an ambulance,
with its API token as ``Authorization: Bearer``) and to admins. The hub only
relays: edges check every file's sha256 and the release's ed25519 signature
against the public key they were configured with, so a hub cannot make an edge
run a model that the key holder did not sign.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response

from hospital_hub.api import RuntimeDep, _api_user, _client
from hospital_hub.auth import Principal
from hospital_hub.runtime import HubRuntime
from shared.errors import ModelUpdateError
from shared.manifest import ModelManifestError, sha256_file, verified_path
from shared.signing import SAFE_SEGMENT, Release, load_release, parse_release, save_release, verify_release

logger = logging.getLogger(__name__)

OFFER_FILE = "offer.json"
MODEL_READERS = ("admin", "ambulance")

ModelReader = Annotated[Principal, Depends(_api_user(*MODEL_READERS))]


def publish_release(release_path: Path, models_dir: Path, hub_dir: Path,
                    public_key: Ed25519PublicKey | None = None) -> Release:
    """Make ``release_path`` (with its files from ``models_dir``) the hub's offer.

    Every file is checked against its sha256 before and after the copy; the
    offer file is replaced last, so edges never see an offer whose files are
    not all in place.

    Raises:
        ModelUpdateError: not a release, a file missing or altered, or (with
            ``public_key``) a signature that does not verify.
    """
    release = load_release(release_path)
    entries = verify_release(release, public_key) if public_key is not None else release.models()
    try:
        sources = [(file, verified_path(models_dir, entry, file))
                   for entry in entries for file in entry.files]
    except ModelManifestError as exc:
        raise ModelUpdateError(str(exc)) from exc
    hub_dir.mkdir(parents=True, exist_ok=True)
    for file, source in sources:
        target = hub_dir / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        if sha256_file(tmp) != file.sha256:
            tmp.unlink(missing_ok=True)
            raise ModelUpdateError(f"{file.path} changed while it was copied; nothing published")
        os.replace(tmp, target)
    for entry in entries:
        save_release(release, hub_dir / entry.name / entry.version / "release.json")
    save_release(release, hub_dir / OFFER_FILE)
    logger.info("model release published", extra={"release": release.label, "key_id": release.key_id,
                                                   "hub_dir": str(hub_dir)})
    return release


def current_offer(hub_dir: Path) -> Release | None:
    """The release on offer in ``hub_dir``, or None.

    Raises:
        ModelUpdateError: the offer file is not a release.
    """
    path = hub_dir / OFFER_FILE
    if not path.is_file():
        return None
    return load_release(path)


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
    logger.info("model offer fetched", extra={"username": user.username, "client": _client(request)})
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
