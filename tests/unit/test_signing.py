"""ed25519 signatures on model releases (shared/signing.py) and the
``goldenhour models`` commands on a tiny fake model."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from hospital_hub.model_cli import app
from shared.errors import ModelUpdateError, SignatureError
from shared.findings import FINDINGS
from shared.manifest import Manifest, ModelEntry, describe_file, save_manifest
from shared.signing import (
    DOMAIN,
    Release,
    canonical_json,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    load_release,
    raw_public_bytes,
    release_payload,
    sign_release,
    verify_release,
    write_keypair,
)

runner = CliRunner()


def _entry(models: Path, version: str = "1.0.0", name: str = "tiny") -> ModelEntry:
    """A classifier entry with one small file written under ``models``."""
    folder = models / name / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(b"not really onnx " + version.encode() * 100)
    return ModelEntry(name=name, version=version, task="classifier", labels=[str(f) for f in FINDINGS],
                      input={"size": 64}, files=[describe_file(models, folder / "model.onnx", "onnx")],
                      outputs={"logits": "(N, 14)"}, thresholds=[0.5] * len(FINDINGS),
                      command="test", data="none", created_at="2026-01-01T00:00:00+00:00")


def _tampered(release: Release, change: dict[str, object]) -> Release:
    entries = json.loads(json.dumps(release.entries))
    entries[0].update(change)
    return release.model_copy(update={"entries": entries})


def test_a_good_signature_verifies_and_covers_every_file(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    key = generate_key()
    release = sign_release([entry], key)
    assert verify_release(release, key.public_key()) == [entry]
    assert release.key_id == key_id(key.public_key())
    payload = release.payload()
    assert payload.startswith(DOMAIN)
    assert entry.files[0].sha256.encode() in payload and b'"bytes":' in payload
    # canonical: the order of keys in the file does not matter
    reordered = release.model_copy(update={"entries": [dict(reversed(list(release.entries[0].items())))]})
    assert reordered.payload() == payload
    assert verify_release(reordered, key.public_key()) == [entry]


def test_a_bad_signature_is_refused(tmp_path: Path) -> None:
    key = generate_key()
    release = sign_release([_entry(tmp_path)], key)
    raw = bytearray(base64.b64decode(release.signature))
    raw[0] ^= 1
    flipped = release.model_copy(update={"signature": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(SignatureError, match="altered after signing"):
        verify_release(flipped, key.public_key())
    for garbage in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(SignatureError):
            verify_release(release.model_copy(update={"signature": garbage}), key.public_key())


@pytest.mark.parametrize("change", [
    {"thresholds": [0.1] * len(FINDINGS)},
    {"version": "1.0.1"},
    {"notes": "cleared for clinical use"},
])
def test_a_tampered_manifest_entry_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    key = generate_key()
    release = sign_release([_entry(tmp_path)], key)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_release(_tampered(release, change), key.public_key())


def test_a_swapped_file_hash_is_refused(tmp_path: Path) -> None:
    key = generate_key()
    release = sign_release([_entry(tmp_path)], key)
    files = [dict(release.entries[0]["files"][0], sha256="0" * 64)]
    with pytest.raises(SignatureError):
        verify_release(_tampered(release, {"files": files}), key.public_key())


def test_the_wrong_key_is_refused_with_both_key_ids(tmp_path: Path) -> None:
    signer, other = generate_key(), generate_key()
    release = sign_release([_entry(tmp_path)], signer)
    with pytest.raises(SignatureError) as info:
        verify_release(release, other.public_key())
    assert key_id(signer.public_key()) in str(info.value) and key_id(other.public_key()) in str(info.value)
    # a release that lies about its key id still fails on the signature itself
    liar = release.model_copy(update={"key_id": key_id(other.public_key())})
    with pytest.raises(SignatureError, match="altered after signing"):
        verify_release(liar, other.public_key())


def test_keys_as_pem_and_as_raw_base64(tmp_path: Path) -> None:
    private, public = write_keypair(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = load_private_key(private)
    assert raw_public_bytes(load_public_key(public)) == raw_public_bytes(key.public_key())
    raw_private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
    (tmp_path / "raw.key").write_text(base64.b64encode(raw_private).decode() + "\n")
    (tmp_path / "raw.pub").write_text(base64.b64encode(raw_public_bytes(key.public_key())).decode())
    release = sign_release([_entry(tmp_path)], load_private_key(tmp_path / "raw.key"))
    verify_release(release, load_public_key(tmp_path / "raw.pub"))
    verify_release(release, load_public_key(public))
    with pytest.raises(ModelUpdateError, match="refusing to overwrite"):
        write_keypair(tmp_path / "keys")


def test_malformed_keys_are_refused_clearly(tmp_path: Path) -> None:
    private, public = write_keypair(tmp_path)
    bad = {
        "garbage.pub": b"this is not a key",
        "short.pub": base64.b64encode(b"x" * 31),
        "broken.pub": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "rsa.pub": rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SignatureError):
            load_public_key(tmp_path / name)
    with pytest.raises(SignatureError, match="private key"):
        load_public_key(private)
    with pytest.raises(SignatureError, match="cannot read"):
        load_public_key(tmp_path / "missing.pub")
    with pytest.raises(SignatureError):
        load_private_key(public)
    (tmp_path / "short.key").write_bytes(base64.b64encode(b"k" * 16))
    with pytest.raises(SignatureError, match="32"):
        load_private_key(tmp_path / "short.key")


def test_file_paths_outside_name_and_version_are_refused(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    for path in ("../../etc/passwd", "tiny/1.0.0/../../x", "other/1.0.0/model.onnx", "tiny/1.0.0/.hidden",
                 "tiny/1.0.0/sub/model.onnx"):
        evil = entry.model_copy(update={"files": [entry.files[0].model_copy(update={"path": path})]})
        with pytest.raises(ModelUpdateError, match="is not"):
            sign_release([evil], generate_key())
    # also when such an entry arrives signed by a key the edge trusts
    key = generate_key()
    raw = entry.model_dump(mode="json")
    raw["files"][0]["path"] = "../model.onnx"
    signature = base64.b64encode(key.sign(release_payload([raw]))).decode()
    release = Release(entries=[raw], key_id=key_id(key.public_key()), signature=signature, signed_at="now")
    with pytest.raises(ModelUpdateError, match="is not"):
        verify_release(release, key.public_key())


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1.5, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1.5}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_keygen_sign_verify_publish_commands(tmp_path: Path) -> None:
    models = tmp_path / "models"
    save_manifest(Manifest(models=[_entry(models), _entry(models, "1.1.0")]), models)
    result = runner.invoke(app, ["keygen", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "keys" / "model-signing.key", tmp_path / "keys" / "model-signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert runner.invoke(app, ["keygen", "--out", str(tmp_path / "keys")]).exit_code == 1

    result = runner.invoke(app, ["sign", "--key", str(private), "--manifest", str(models / "manifest.json"),
                                 "--model", "tiny", "--version", "1.1.0"])
    assert result.exit_code == 0, result.output
    release_path = models / "tiny" / "1.1.0" / "release.json"
    release = load_release(release_path)
    assert [e["version"] for e in release.entries] == ["1.1.0"]

    result = runner.invoke(app, ["verify", "--release", str(release_path), "--public-key", str(public),
                                 "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    write_keypair(tmp_path / "other")
    result = runner.invoke(app, ["verify", "--release", str(release_path),
                                 "--public-key", str(tmp_path / "other" / "model-signing.pub")])
    assert result.exit_code == 1 and "does not verify" in result.output

    hub = tmp_path / "hub"
    result = runner.invoke(app, ["publish", "--release", str(release_path), "--hub-dir", str(hub),
                                 "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    assert (hub / "tiny" / "1.1.0" / "model.onnx").read_bytes() == (
        models / "tiny" / "1.1.0" / "model.onnx").read_bytes()
    assert load_release(hub / "offer.json") == release

    # a file that no longer matches its signed sha256 is not published
    (models / "tiny" / "1.1.0" / "model.onnx").write_bytes(b"changed")
    result = runner.invoke(app, ["publish", "--release", str(release_path),
                                 "--hub-dir", str(tmp_path / "h2")])
    assert result.exit_code == 1 and "sha256" in result.output
    assert not (tmp_path / "h2" / "offer.json").exists()
    # and no release is signed for files that do not match the manifest
    result = runner.invoke(app, ["sign", "--key", str(private), "--manifest", str(models / "manifest.json"),
                                 "--model", "tiny", "--version", "1.1.0", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and not (tmp_path / "r.json").exists()


def test_the_image_guard_is_never_released(tmp_path: Path) -> None:
    """The guard's parameters ship with the software: no release may carry them, whether
    signed by this code or crafted and signed by hand."""
    entry = _entry(tmp_path).model_copy(update={"task": "guard", "labels": ["contrast"],
                                                "thresholds": None})
    key = generate_key()
    with pytest.raises(ModelUpdateError, match="classifiers and detectors only"):
        sign_release([entry], key)
    raw = [entry.model_dump(mode="json")]
    crafted = Release(entries=raw, key_id=key_id(key.public_key()), signed_at="2026-01-01T00:00:00+00:00",
                      signature=base64.b64encode(key.sign(release_payload(raw))).decode())
    with pytest.raises(ModelUpdateError, match="tiny@1.0.0 is a guard"):
        verify_release(crafted, key.public_key())
