"""The world of the signed-model-update tests (tests/integration/test_model_update.py):
signed releases made by ``goldenhour models`` from a copy of the shipped
classifier, a real hub (uvicorn on a loopback port) offering them, and an
ambulance whose updater fetches them."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import uvicorn
from typer.testing import CliRunner

from edge_agent.agent import CaseRecord, EdgeAgent
from edge_agent.backends import OnnxRuntimeConfig
from edge_agent.model_update import ModelUpdater
from edge_agent.settings import EdgeSettings, load_edge_settings
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

NAME = "chest-effnetlite0"
GOOD = ("2.2.0", "2.5.0", "2.6.0")
VERSIONS = (*GOOD, "2.3.0", "2.4.0")
# The classifier the repository ships (its version changes with each release).
SHIPPED = load_manifest(DEFAULT_MODELS_DIR).find(NAME).version
runner = CliRunner()


def run_models_cli(*args: str) -> None:
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
        run_models_cli("publish", "--release", str(release or self.releases[version]),
                       "--hub-dir", str(self.hub_dir), "--models-dir", str(self.publisher),
                       "--public-key", str(self.public_key))


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


def release_world(tmp: Path) -> Iterator[World]:
    """The shipped model copied, five signed releases of it and a hub that serves offers."""
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

    run_models_cli("keygen", "--out", str(tmp / "keys"))
    private_key, public_key = tmp / "keys" / "model-signing.key", tmp / "keys" / "model-signing.pub"
    releases = {}
    for version in VERSIONS:
        run_models_cli("sign", "--key", str(private_key), "--manifest", str(publisher / "manifest.json"),
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


def ambulance(world: World, tmp_path: Path) -> Iterator[Edge]:
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
