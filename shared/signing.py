"""Ed25519 signatures on model releases.

A *release* is one or more manifest entries (:class:`shared.manifest.ModelEntry`)
with a signature. The signed bytes are a fixed domain prefix followed by the
canonical JSON (sorted keys, no spaces, UTF-8) of the entries exactly as they
appear in the release file; every entry lists each of its files with its
sha256 and size, so the signature covers every file through its hash.

Keys are read from PEM (PKCS#8 private, SubjectPublicKeyInfo public) or from a
file holding the 32 raw key bytes in base64. The private key stays with the
operator (offline); edges and hubs only ever see the public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ModelUpdateError, SignatureError
from shared.manifest import ModelEntry, ModelFile

logger = logging.getLogger(__name__)

RELEASE_VERSION = 1
DOMAIN = b"goldenhour-model-release-v1\n"
"""Prefix of the signed bytes, so that a signature over a release can never be
replayed as a signature over anything else."""
RELEASABLE = ("classifier", "detector")
"""The tasks a release may carry (what model updates install on the edge)."""
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
"""A model name, version or file name that is safe as one path segment (no
separators, no leading dot, so never ``..``)."""


class Release(BaseModel):
    """A signed release file (``release.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release_version: Literal[1] = RELEASE_VERSION
    entries: list[dict[str, Any]] = Field(min_length=1)
    """Manifest entries exactly as signed (validated by :meth:`models`)."""
    key_id: str
    """First 16 hex digits of the sha256 of the signer's raw public key (a hint only:
    the signature is what is checked)."""
    signature: str
    """Base64 ed25519 signature over :meth:`payload`."""
    signed_at: str

    def payload(self) -> bytes:
        """The bytes that the signature covers."""
        return release_payload(self.entries)

    @property
    def digest(self) -> str:
        """sha256 of the signed bytes and the signature: names this exact release."""
        return hashlib.sha256(self.payload() + self.signature.encode()).hexdigest()

    @property
    def label(self) -> str:
        """``name@version`` of every entry, for logs."""
        return ", ".join(f"{e.get('name')}@{e.get('version')}" for e in self.entries)

    def models(self) -> list[ModelEntry]:
        """The entries as validated manifest entries with a safe file layout.

        Raises:
            ModelUpdateError: an entry is not a valid manifest entry, is not a classifier
                or a detector, or a file path is not ``<name>/<version>/<file>``.
        """
        try:
            models = [ModelEntry.model_validate(entry) for entry in self.entries]
        except ValidationError as exc:
            raise ModelUpdateError(f"release {self.label}: invalid manifest entry: {exc}") from exc
        for model in models:
            _releasable(model)
            for file in model.files:
                file_segments(model, file)
        return models


def canonical_json(value: Any) -> bytes:
    """Sorted-key, compact, UTF-8 JSON: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def release_payload(entries: list[dict[str, Any]]) -> bytes:
    """The signed bytes of a release made of ``entries``."""
    return DOMAIN + canonical_json({"release_version": RELEASE_VERSION, "entries": entries})


def _releasable(entry: ModelEntry) -> None:
    """Releases carry classifiers and detectors; the image guard ships with the software.

    Raises:
        ModelUpdateError: any other task.
    """
    if entry.task not in RELEASABLE:
        raise ModelUpdateError(f"{entry.key} is a {entry.task}: a release carries classifiers and "
                               "detectors only (the image guard ships with the software)")


def file_segments(entry: ModelEntry, file: ModelFile) -> tuple[str, str, str]:
    """``(name, version, file name)`` of a release file, which must live at
    ``<name>/<version>/<file name>`` relative to the models folder.

    Raises:
        ModelUpdateError: any other path (a sub-folder, ``..``, an absolute path).
    """
    parts = file.path.split("/")
    if (len(parts) != 3 or parts[0] != entry.name or parts[1] != entry.version
            or not all(SAFE_SEGMENT.match(part) for part in parts)):
        raise ModelUpdateError(f"{entry.key}: file path {file.path!r} is not "
                               f"'{entry.name}/{entry.version}/<file>' with a plain file name")
    return parts[0], parts[1], parts[2]


# -- keys ---------------------------------------------------------------------------------------
def generate_key() -> Ed25519PrivateKey:
    """A new random signing key."""
    return Ed25519PrivateKey.generate()


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (16 hex digits of its sha256)."""
    return hashlib.sha256(raw_public_bytes(key)).hexdigest()[:16]


def write_keypair(out_dir: Path, name: str = "model-signing", *, overwrite: bool = False
                  ) -> tuple[Path, Path]:
    """Write a new key pair as ``<name>.key`` (PEM, mode 0600) and ``<name>.pub`` (PEM).

    Raises:
        ModelUpdateError: a key file exists already and ``overwrite`` is False.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    if not overwrite and (private_path.exists() or public_path.exists()):
        raise ModelUpdateError(f"{private_path} or {public_path} exists; refusing to overwrite a key")
    key = generate_key()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.unlink(missing_ok=True)
    # Created 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    logger.info("model signing key pair written", extra={"key_id": key_id(key.public_key()),
                                                         "public_key": str(public_path)})
    return private_path, public_path


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read key {path}: {exc.strerror or exc}") from exc


def _raw_base64(data: bytes, path: Path) -> bytes:
    try:
        raw = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{path} is neither a PEM key nor base64 of a raw ed25519 key") from exc
    if len(raw) != 32:
        raise SignatureError(f"{path} holds {len(raw)} bytes, an ed25519 key has 32")
    return raw


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An ed25519 private key from a PEM (PKCS#8, unencrypted) or raw base64 file.

    Raises:
        SignatureError: unreadable, malformed, or not an ed25519 key.
    """
    data = _read_key_file(path)
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SignatureError(f"{path} is not a readable unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"{path} is a {type(key).__name__}, not an ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_base64(data, path))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM (SubjectPublicKeyInfo) or raw base64 file.

    Raises:
        SignatureError: unreadable, malformed, or not an ed25519 key.
    """
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise SignatureError(f"{path} is a private key; give the public key (never ship the private one)")
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SignatureError(f"{path} is not a readable PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"{path} is a {type(key).__name__}, not an ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_base64(data, path))


# -- releases -----------------------------------------------------------------------------------
def sign_release(entries: list[ModelEntry], key: Ed25519PrivateKey) -> Release:
    """A release of ``entries`` signed with ``key``.

    Raises:
        ModelUpdateError: an entry is not a classifier or a detector, or a file is not
            at ``<name>/<version>/<file>``.
    """
    raw = [entry.model_dump(mode="json") for entry in entries]
    for entry in entries:
        _releasable(entry)
        for file in entry.files:
            file_segments(entry, file)
    signature = key.sign(release_payload(raw))
    release = Release(entries=raw, key_id=key_id(key.public_key()),
                      signature=base64.b64encode(signature).decode("ascii"),
                      signed_at=datetime.now(UTC).isoformat(timespec="seconds"))
    logger.info("release signed", extra={"release": release.label, "key_id": release.key_id})
    return release


def verify_release(release: Release, key: Ed25519PublicKey) -> list[ModelEntry]:
    """The release's entries, once its signature verifies under ``key``.

    Raises:
        SignatureError: malformed signature, signed with another key, or altered after signing.
        ModelUpdateError: signed, but not valid manifest entries.
    """
    try:
        signature = base64.b64decode(release.signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"release {release.label}: the signature is not base64") from exc
    if len(signature) != 64:
        raise SignatureError(f"release {release.label}: a {len(signature)}-byte signature "
                             "(ed25519 signatures have 64)")
    try:
        key.verify(signature, release.payload())
    except InvalidSignature as exc:
        trusted = key_id(key)
        if release.key_id != trusted:
            raise SignatureError(f"release {release.label} says it is signed with key {release.key_id}, "
                                 f"not the trusted key {trusted}, and does not verify") from exc
        raise SignatureError(f"release {release.label}: the signature does not verify; the release "
                             "was altered after signing") from exc
    return release.models()


def load_release(path: Path) -> Release:
    """Read a release file.

    Raises:
        ModelUpdateError: missing or not a release.
    """
    try:
        return parse_release(path.read_bytes())
    except OSError as exc:
        raise ModelUpdateError(f"cannot read release {path}: {exc.strerror or exc}") from exc


def parse_release(data: bytes) -> Release:
    """A release from its JSON bytes.

    Raises:
        ModelUpdateError: not JSON, or not a release.
    """
    try:
        return Release.model_validate_json(data)
    except ValidationError as exc:
        raise ModelUpdateError(f"not a model release: {exc.errors()[0]['msg']}") from exc


def save_release(release: Release, path: Path) -> None:
    """Write a release file atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(release.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
