"""Signed model updates end to end: releases made by ``goldenhour models``
from a copy of the shipped classifier, offered by a real hub (uvicorn on a
loopback port), fetched, verified, self-tested and swapped in by the edge's
updater, and rolled back when they fail."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="building test models needs the onnx package")

from edge_agent.agent import CaseRecord  # noqa: E402
from edge_agent.model_update import ModelUpdater  # noqa: E402
from edge_agent.pipeline import build_pipeline  # noqa: E402
from edge_agent.update_files import STAGING  # noqa: E402
from shared.manifest import load_manifest  # noqa: E402
from tests.model_update_world import (  # noqa: E402
    NAME,
    SHIPPED,
    Edge,
    World,
    ambulance,
    release_world,
    run_models_cli,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from release_world(tmp_path_factory.mktemp("model-update"))


@pytest.fixture
def edge(world: World, tmp_path: Path) -> Iterator[Edge]:
    """An ambulance (not connected: cases wait in its outbox) running the shipped
    classifier on ONNX Runtime from its own models folder, updates on."""
    yield from ambulance(world, tmp_path)


def _kept_old_model(edge: Edge) -> None:
    """The edge still runs the shipped version, its manifest and files untouched, nothing half-installed."""
    assert edge.diagnose().diagnosis.model.version == SHIPPED  # type: ignore[union-attr]
    assert [m.version for m in load_manifest(edge.models).models] == [SHIPPED]
    assert sorted(p.name for p in (edge.models / NAME).iterdir()) == [SHIPPED]
    assert not any((edge.models / STAGING).glob("*"))


def _new_sha(world: World, version: str) -> str:
    return load_manifest(world.publisher).find(NAME, version).file("onnx").sha256


def test_a_signed_release_is_swapped_in_between_diagnoses(world: World, edge: Edge) -> None:
    assert edge.updater.check_now().outcome == "no-offer"
    world.publish("2.2.0")
    old = edge.agent.pipeline
    old_sha = old.classifier.info.sha256

    # A diagnosis that is under way on the old model when the update lands...
    entered, proceed = threading.Event(), threading.Event()
    infer = old.classifier.infer  # type: ignore[attr-defined]

    def slow_infer(batch):  # type: ignore[no-untyped-def]
        entered.set()
        assert proceed.wait(60)
        return infer(batch)

    old.classifier.infer = slow_infer  # type: ignore[attr-defined]
    results: list[CaseRecord] = []
    worker = threading.Thread(target=lambda: results.append(edge.diagnose()))
    worker.start()
    assert entered.wait(60)
    result = edge.updater.check_now()
    assert result.outcome == "installed", result
    assert edge.agent.pipeline.classifier.info.version == "2.2.0"
    proceed.set()
    worker.join(60)
    # ...finishes on the old model; the next one runs on the new one.
    first = results[0].diagnosis
    assert first is not None and (first.model.version, first.model.sha256) == (SHIPPED, old_sha)
    second = edge.diagnose().diagnosis
    assert second is not None
    assert (second.model.version, second.model.sha256) == ("2.2.0", _new_sha(world, "2.2.0"))
    # The metrics time the stages of diagnoses on either model and name the one in use.
    metrics = edge.agent.metrics.registry
    assert metrics.get_sample_value("goldenhour_edge_stage_seconds_count", {"stage": "classify"}) == 2
    assert metrics.get_sample_value("goldenhour_edge_diagnosis_seconds_count") == 2
    assert metrics.get_sample_value("goldenhour_edge_model_info", {"model": NAME, "version": "2.2.0"}) == 1
    assert metrics.get_sample_value("goldenhour_edge_model_info", {"model": NAME, "version": SHIPPED}) is None
    assert np.isclose(second.findings[0].probability, first.findings[0].probability, atol=1e-4)

    manifest = load_manifest(edge.models)
    assert [m.version for m in manifest.models] == [SHIPPED, "2.2.0"]
    assert (edge.models / NAME / "2.2.0" / "model.onnx").is_file()
    assert (edge.models / NAME / SHIPPED / "model.onnx").is_file()  # the previous version stays
    assert not any((edge.models / STAGING).glob("*"))
    assert edge.agent.models.on_probation
    assert edge.updater.check_now().outcome == "skipped"

    edge.diagnose()  # the second diagnosis on the new model ends its probation
    assert not edge.agent.models.on_probation
    assert edge.updater.status is not None and edge.updater.status.outcome == "passed"
    assert edge.updater.check_now().outcome == "current"
    # a restarted agent comes up on the new model
    assert build_pipeline(edge.settings).classifier.info.version == "2.2.0"


def _install_and_pass(world: World, edge: Edge, version: str) -> None:
    world.publish(version)
    assert edge.updater.check_now().outcome == "installed"
    for _ in range(edge.settings.model_update.probation):
        assert edge.diagnose().diagnosis.model.version == version  # type: ignore[union-attr]
    assert edge.updater.status is not None and edge.updater.status.outcome == "passed"


def test_old_versions_go_only_after_a_newer_one_has_passed(world: World, edge: Edge) -> None:
    def on_disk() -> list[str]:
        return sorted(p.name for p in (edge.models / NAME).iterdir())

    _install_and_pass(world, edge, "2.2.0")
    _install_and_pass(world, edge, "2.5.0")
    assert on_disk() == [SHIPPED, "2.2.0", "2.5.0"]  # 2.2.0 was running before 2.5.0: kept
    world.publish("2.6.0")
    assert edge.updater.check_now().outcome == "installed"
    assert on_disk() == [SHIPPED, "2.2.0", "2.5.0", "2.6.0"]  # nothing goes during the probation
    edge.diagnose()
    edge.diagnose()
    assert edge.updater.status is not None and edge.updater.status.outcome == "passed"
    # 2.2.0 (installed by the updater, older than the previous) goes; the shipped version stays
    assert on_disk() == [SHIPPED, "2.5.0", "2.6.0"]
    assert [m.version for m in load_manifest(edge.models).models] == [SHIPPED, "2.5.0", "2.6.0"]


def _flip_signature(path: Path) -> None:
    data = json.loads(path.read_text())
    data["signature"] = ("B" if data["signature"][0] == "A" else "A") + data["signature"][1:]
    path.write_text(json.dumps(data))


def _raise_thresholds(path: Path) -> None:
    data = json.loads(path.read_text())
    data["entries"][0]["thresholds"] = [0.99] * 14
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("attack", ["flipped-signature", "tampered-entry", "other-key"])
def test_a_release_that_does_not_verify_is_rejected_before_any_download(
        world: World, edge: Edge, attack: str) -> None:
    offer = world.hub_dir / "offer.json"
    if attack == "other-key":
        keys = world.tmp / "rogue-keys"
        if not keys.exists():
            run_models_cli("keygen", "--out", str(keys))
        rogue = world.tmp / "rogue-release.json"
        run_models_cli("sign", "--key", str(keys / "model-signing.key"), "--out", str(rogue),
                       "--manifest", str(world.publisher / "manifest.json"), "--model", NAME,
                       "--version", "2.2.0")
        run_models_cli("publish", "--release", str(rogue), "--hub-dir", str(world.hub_dir),
                       "--models-dir", str(world.publisher))
    else:
        world.publish("2.2.0")
        (_flip_signature if attack == "flipped-signature" else _raise_thresholds)(offer)
    result = edge.updater.check_now()
    assert result.outcome == "rejected", result
    assert "signature" in result.detail or "signed with key" in result.detail
    assert not (edge.models / STAGING).exists()  # nothing was downloaded
    _kept_old_model(edge)
    assert edge.updater.check_now().outcome == "known-rejected"
    state = json.loads((edge.settings.state_dir / "model-updates.json").read_text())
    assert list(state["rejected"]) == [result.digest]


@pytest.mark.parametrize("damage", ["flipped-byte", "appended"])
def test_a_file_that_is_not_the_signed_one_is_rejected(world: World, edge: Edge, damage: str) -> None:
    world.publish("2.2.0")
    served = world.hub_dir / NAME / "2.2.0" / "model.onnx"
    data = bytearray(served.read_bytes())
    if damage == "flipped-byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data += b"\0" * 10
    served.write_bytes(bytes(data))
    result = edge.updater.check_now()
    assert result.outcome == "rejected", result
    assert ("sha256" if damage == "flipped-byte" else "signed entry says") in result.detail
    _kept_old_model(edge)
    assert edge.updater.check_now().outcome == "known-rejected"


@pytest.mark.parametrize(("version", "why"), [("2.3.0", "does not load"), ("2.4.0", "self-test")])
def test_a_model_that_fails_its_self_test_is_never_swapped_in(
        world: World, edge: Edge, version: str, why: str) -> None:
    world.publish(version)
    result = edge.updater.check_now()
    assert result.outcome == "rejected", result
    assert why in result.detail
    assert not edge.agent.models.on_probation
    _kept_old_model(edge)
    assert edge.updater.check_now().outcome == "known-rejected"


def test_a_model_that_fails_on_real_diagnoses_is_rolled_back(world: World, edge: Edge) -> None:
    world.publish("2.2.0")
    assert edge.updater.check_now().outcome == "installed"
    new = edge.agent.pipeline

    def broken(batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("inference engine crashed")

    new.classifier.infer = broken  # type: ignore[attr-defined]
    record = edge.diagnose()  # diagnosed again on the previous model: the patient is not lost
    assert record.diagnosis is not None and record.diagnosis.model.version == SHIPPED
    assert edge.updater.status is not None and edge.updater.status.outcome == "rolled-back"
    assert "inference engine crashed" in edge.updater.status.detail
    _kept_old_model(edge)
    assert edge.updater.check_now().outcome == "known-rejected"


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_hub_serves_the_offer_to_ambulances_and_only_its_listed_files(world: World, edge: Edge) -> None:
    files = world.url.rsplit("/", 1)[0] + "/files/"
    assert _get(world.url, world.token)[0] == 404  # nothing on offer yet
    world.publish("2.2.0")
    (world.hub_dir / NAME / "2.2.0" / "notes.txt").write_text("not in the release")
    assert _get(world.url, None)[0] == 401
    assert _get(world.url, "ghs_not-a-token")[0] == 401
    assert _get(world.url, world.er_token)[0] == 403
    status, body = _get(world.url, world.token)
    assert status == 200 and body == (world.hub_dir / "offer.json").read_bytes()
    status, body = _get(files + f"{NAME}/2.2.0/model.onnx", world.token)
    assert status == 200 and body == (world.publisher / NAME / "2.2.0" / "model.onnx").read_bytes()
    assert _get(files + f"{NAME}/2.2.0/model.onnx", world.er_token)[0] == 403
    for path in (f"{NAME}/2.2.0/notes.txt", f"{NAME}/2.2.0/release.json", f"{NAME}/2.3.0/model.onnx",
                 f"{NAME}/2.2.0/..%2F..%2Foffer.json", f"{NAME}/..%2F..%2F/offer.json",
                 f"{NAME}/%2e%2e/offer.json", "..%2F..%2Fhub.db/x/y"):
        assert _get(files + path, world.token)[0] == 404, path


def test_a_pinned_edge_skips_releases_and_another_model_is_refused(world: World, edge: Edge) -> None:
    world.publish("2.2.0")
    pinned = ModelUpdater(edge.settings.model_copy(update={"model_version": SHIPPED}), edge.agent.models)
    result = pinned.check_now()
    assert result.outcome == "skipped" and "pinned" in result.detail
    other = ModelUpdater(edge.settings.model_copy(update={"model": "chest-other"}), edge.agent.models)
    result = other.check_now()
    assert result.outcome == "rejected" and "not for this edge" in result.detail
    _kept_old_model(edge)


def test_a_models_folder_the_updater_cannot_write_turns_updates_off(
        edge: Edge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """As under the edge's systemd unit (ProtectSystem=strict) with the checkout's
    read-only models/ folder: refused at start-up with the fix, not at every poll."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: (
        False if Path(path) == edge.models and mode == os.W_OK else access(path, mode, *a, **k)))
    assert ModelUpdater.from_settings(edge.settings, edge.agent.models) is None
    errors = [getattr(r, "error", "") for r in caplog.records if r.message == "model updates are off"]
    assert len(errors) == 1 and "not writable" in errors[0] and "GOLDENHOUR_EDGE_MODELS_DIR" in errors[0]
    _kept_old_model(edge)
