"""The hub's model offer: the signed release that edges poll for, and its files.

``goldenhour models publish`` copies a release and its files into the offer
folder (``GOLDENHOUR_HUB_MODEL_OFFER_DIR``)::

    <offer dir>/offer.json                      the current release (signed)
    <offer dir>/<name>/<version>/<file>         its files

The routes (:mod:`hospital_hub.routes.model_offer`) serve them to ambulances
(a service client bound to an ambulance, with its API token as
``Authorization: Bearer``) and to admins. The hub only relays: edges check
every file's sha256 and the release's ed25519 signature against the public key
they were configured with, so a hub cannot make an edge run a model that the
key holder did not sign.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.errors import ModelUpdateError
from shared.manifest import ModelManifestError, sha256_file, verified_path
from shared.signing import Release, load_release, save_release, verify_release

logger = logging.getLogger(__name__)

OFFER_FILE = "offer.json"


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
