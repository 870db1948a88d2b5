"""Signed model updates end to end: releases made by ``goldenhour models``
from a copy of the shipped classifier, offered by a real hub (uvicorn on a
loopback port), fetched, verified, self-tested and swapped in by the edge's
updater, and rolled back when they fail."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

from edge_agent.agent import CaseRecord, EdgeAgent
from edge_agent.backends import OnnxRuntimeConfig
from edge_agent.model_update import ModelUpdater
from edge_agent.pipeline import build_pipeline
from edge_agent.settings import EdgeSettings, load_edge_settings
from edge_agent.update_files import STAGING
from edge_agent.update_settings import ModelUpdateSettings
from hospital_hub.api import create_app
from hospital_hub.auth import create_token, create_user
from hospital_hub.db import migrate
from hospital_hub.model_cli import app as models_cli
from hospital_hub.models import UserCreate
from hospital_hub.registry import import_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared.broker import free_port
from shared.manifest import DEFAULT_MODELS_DIR, Manifest, describe_file, load_manifest, save_manifest
from tests.images import chest_like_png
from tests.services import wait_until

onnx = pytest.importorskip("onnx", reason="building test models needs the onnx package")

NAME = "chest-effnetlite0"
GOOD = ("2.2.0", "2.5.0", "2.6.0")
VERSIONS = (*GOOD, "2.3.0", "2.4.0")
# The classifier the repository ships (its version changes with each release).
SHIPPED = load_manifest(DEFAULT_MODELS_DIR).find(NAME).version
runner = CliRunner()


def _cli(*args: str) -> None:
    result = runner.invoke(models_cli, list(args))
    assert result.exit_code == 0, result.output


@dataclass
class World:
    """Keys, the shipped model, signed releases and a hub serving the offer."""

    shipped: Path
    """A models folder with the shipped classifier (ONNX only) as the edge has it."""
    publisher: Path
    """The operator's models folder with the new versions."""
    releases: dict[str, Path]
    private_key: Path
    public_key: Path
    hub_dir: Path
    url: str
    token: str
    er_token: str
    tmp: Path

    def publish(self, version: str, release: Path | None = None) -> None:
        _cli("publish", "--release", str(release or self.releases[version]), "--hub-dir", str(self.hub_dir),
             "--models-dir", str(self.publisher), "--public-key", str(self.public_key))


def _nan_onnx(path: Path) -> None:
    """A valid ONNX model with the classifier's input whose logits are all NaN."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
         helper.make_node("Mul", ["mean", "nan"], ["logits"])],
        "nan-classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 384, 384])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 14])],
        initializer=[numpy_helper.from_array(np.full((1, 14), np.nan, np.float32), "nan")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("model-update")
    shipped_entry = load_manifest(DEFAULT_MODELS_DIR).find(NAME)
    onnx_file = shipped_entry.file("onnx")
    shipped = tmp / "shipped"
    (shipped / NAME / shipped_entry.version).mkdir(parents=True)
    shutil.copyfile(DEFAULT_MODELS_DIR / onnx_file.path, shipped / onnx_file.path)
    shipped_entry = shipped_entry.model_copy(update={"files": [onnx_file]})
    save_manifest(Manifest(models=[shipped_entry]), shipped)

    # The operator's copy: 2.2.0, 2.5.0 and 2.6.0 are the shipped model re-saved
    # (same weights, new sha256); 2.3.0 is not ONNX at all; 2.4.0 is valid ONNX
    # whose logits are NaN.
    publisher = tmp / "publisher"
    entries = [shipped_entry]
    model = onnx.load(str(DEFAULT_MODELS_DIR / onnx_file.path))
    for version in VERSIONS:
        target = publisher / NAME / version / "model.onnx"
        target.parent.mkdir(parents=True)
        if version in GOOD:
            model.doc_string = f"goldenhour test release {version}"
            onnx.save(model, str(target))
        elif version == "2.3.0":
            target.write_bytes(os.urandom(4096))
        else:
            _nan_onnx(target)
        entries.append(shipped_entry.model_copy(update={
            "version": version, "files": [describe_file(publisher, target, "onnx")]}))
    save_manifest(Manifest(models=entries), publisher)

    _cli("keygen", "--out", str(tmp / "keys"))
    private_key, public_key = tmp / "keys" / "model-signing.key", tmp / "keys" / "model-signing.pub"
    releases = {}
    for version in VERSIONS:
        _cli("sign", "--key", str(private_key), "--manifest", str(publisher / "manifest.json"),
             "--model", NAME, "--version", version)
        releases[version] = publisher / NAME / version / "release.json"

    hub_dir = tmp / "hub-offer"
    runtime = HubRuntime(load_hub_settings(hub_id="model-update-test", model_offer_dir=hub_dir,
                                           database_url=f"sqlite:///{tmp / 'hub.db'}"))
    migrate(runtime.engine)
    import_registry(runtime.engine, runtime.settings.registry_csv)
    create_user(runtime.engine, UserCreate(username="amb-7-svc", role="service", ambulance_id="amb-7"))
    create_user(runtime.engine, UserCreate(username="er-svc", role="service", hospital_id="bos-mgh"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, manage_runtime=False), host="127.0.0.1",
                                           port=port, log_config=None, access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=15)
        yield World(shipped, publisher, releases, private_key, public_key, hub_dir,
                    f"http://127.0.0.1:{port}/api/models/offer", create_token(runtime.engine, "amb-7-svc"),
                    create_token(runtime.engine, "er-svc"), tmp)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        runtime.engine.dispose()


@dataclass
class Edge:
    settings: EdgeSettings
    agent: EdgeAgent
    updater: ModelUpdater
    xray: Path

    def diagnose(self) -> CaseRecord:
        return self.agent.submit(self.xray)

    @property
    def models(self) -> Path:
        return self.settings.models_dir


@pytest.fixture
def edge(world: World, tmp_path: Path) -> Iterator[Edge]:
    """An ambulance (not connected: cases wait in its outbox) running the shipped
    classifier on ONNX Runtime from its own models folder, updates on."""
    world.hub_dir.joinpath("offer.json").unlink(missing_ok=True)
    models = tmp_path / "models"
    shutil.copytree(world.shipped, models, copy_function=os.link)
    settings = load_edge_settings(
        ambulance_id="amb-7", models_dir=models, model=NAME, detector=None,
        backend=OnnxRuntimeConfig(threads=1), state_dir=tmp_path / "state",
        model_update=ModelUpdateSettings(url=world.url, token=world.token, public_key=world.public_key,
                                         probation=2, interval_s=3600))
    agent = EdgeAgent(settings)
    updater = ModelUpdater.from_settings(settings, agent.models)
    assert updater is not None
    yield Edge(settings, agent, updater, chest_like_png(tmp_path / "xray.png"))
    agent.outbox.close()


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
            _cli("keygen", "--out", str(keys))
        rogue = world.tmp / "rogue-release.json"
        _cli("sign", "--key", str(keys / "model-signing.key"), "--out", str(rogue),
             "--manifest", str(world.publisher / "manifest.json"), "--model", NAME, "--version", "2.2.0")
        _cli("publish", "--release", str(rogue), "--hub-dir", str(world.hub_dir),
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
