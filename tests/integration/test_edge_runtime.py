"""The EdgeRuntime that ``goldenhour edge run`` is: a simulated X-ray unit and a
watched folder feed the agent, everything stops in order, the outbox keeps what
it holds, a source that cannot start stops what had started, and an altered or
missing chest guard stops the start. In-memory broker; real SQLite outbox,
watched folder, DICOM port and model files."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.guard_model import GUARD_MODEL, STATISTICS_FILE
from edge_agent.outbox import Outbox
from edge_agent.runtime import EdgeRuntime, XraySources
from edge_agent.settings import PLACEHOLDER, load_edge_settings
from shared.broker import free_port
from shared.errors import ConfigurationError
from shared.manifest import DEFAULT_MODELS_DIR, ModelManifestError, load_manifest
from shared.mqtt import InMemoryBroker, InMemoryCommunicator
from tests.images import chest_like_png
from tests.services import wait_until


def test_sources_feed_the_agent_and_stop_in_order(tmp_path: Path) -> None:
    unit, inbox = tmp_path / "unit", tmp_path / "inbox"
    unit.mkdir()
    inbox.mkdir()
    chest_like_png(unit / "a.png")
    (unit / "notes.txt").write_text("not an image")  # the unit takes X-ray files only
    settings = load_edge_settings(ambulance_id="amb-rt", state_dir=tmp_path / "state", model=PLACEHOLDER)
    seen: list[str] = []
    runtime = EdgeRuntime(settings, InMemoryCommunicator(InMemoryBroker()),
                          sources=XraySources(folder=unit, watch=inbox, interval_s=0.2),
                          on_case=lambda record: seen.append(record.case_id))
    runtime.start()
    try:
        assert runtime.has_xray_source and runtime.crew is None and runtime.updater is None
        assert wait_until(lambda: len(seen) >= 2, timeout=20)  # round and round the folder
        chest_like_png(inbox / "dropped.png", seed=3)
        assert wait_until(lambda: (inbox / "done" / "dropped.png").exists(), timeout=20)
    finally:
        runtime.stop()
    made = len(runtime.agent.cases)
    assert made >= 3 and set(seen) <= set(runtime.agent.cases)
    time.sleep(0.6)  # three of the unit's intervals: stopped, it takes no more
    assert len(runtime.agent.cases) == made
    runtime.stop()  # a second stop does nothing
    again = Outbox(settings.state_dir / "outbox-amb-rt.sqlite3", max_bytes=10**9)
    assert len(again.cases()) == made  # the outbox was closed with every case on disk
    again.close()


def test_a_source_that_cannot_start_stops_what_had_started(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    settings = load_edge_settings(ambulance_id="amb-rt2", state_dir=tmp_path / "state", model=PLACEHOLDER,
                                  dicom_host="127.0.0.1")
    link = InMemoryCommunicator(InMemoryBroker())
    runtime = EdgeRuntime(settings, link, sources=XraySources(dicom_port=port))
    try:
        with pytest.raises(ConfigurationError, match="cannot listen for DICOM"):
            runtime.start()
    finally:
        taken.close()
    assert not link.connected  # the agent was stopped again
    with pytest.raises(Exception, match="closed"):
        runtime.outbox.pending()


def _guard_copy(models: Path) -> Path:
    """A copy of the models folder's manifest and chest guard; the guard's statistics file."""
    entry = load_manifest().find(GUARD_MODEL)
    models.mkdir()
    shutil.copy(DEFAULT_MODELS_DIR / "manifest.json", models / "manifest.json")
    shutil.copytree(DEFAULT_MODELS_DIR / entry.name, models / entry.name)
    return models / next(f.path for f in entry.files if f.path.endswith(STATISTICS_FILE))


def test_an_altered_or_missing_chest_guard_stops_the_start(tmp_path: Path) -> None:
    models = tmp_path / "models"
    statistics = _guard_copy(models)
    settings = load_edge_settings(ambulance_id="amb-rt3", state_dir=tmp_path / "state", model=PLACEHOLDER,
                                  guard_models_dir=models)
    runtime = EdgeRuntime(settings, InMemoryCommunicator(InMemoryBroker()))  # the copy as shipped
    assert runtime.agent.pipeline.guard.parameters.key == load_manifest().find(GUARD_MODEL).key
    runtime.stop()
    data = json.loads(statistics.read_text())
    data["distance_limit"] = 99.0  # a guard that would let anything through
    statistics.write_text(json.dumps(data))
    with pytest.raises(ModelManifestError,
                       match=r"chest-radiograph guard cannot be loaded.*statistics.json.*sha256"):
        EdgeRuntime(settings, InMemoryCommunicator(InMemoryBroker()))
    statistics.unlink()
    with pytest.raises(ModelManifestError,
                       match=r"chest-radiograph guard cannot be loaded.*statistics.json.*missing"):
        EdgeRuntime(settings, InMemoryCommunicator(InMemoryBroker()))


def test_edge_run_with_an_altered_chest_guard_exits_at_once_saying_why(tmp_path: Path) -> None:
    models = tmp_path / "models"
    statistics = _guard_copy(models)
    statistics.write_bytes(statistics.read_bytes().replace(b"1", b"2", 1))
    env = {**os.environ, "GOLDENHOUR_EDGE_MODEL": PLACEHOLDER, "GOLDENHOUR_EDGE_STATE_DIR": str(tmp_path),
           "GOLDENHOUR_EDGE_GUARD_MODELS_DIR": str(models), "GOLDENHOUR_EDGE_MQTT__PORT": str(free_port())}
    run = subprocess.run([sys.executable, "-m", "shared.cli", "edge", "run"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parents[2])
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2, output
    assert "the edge cannot start: the chest-radiograph guard cannot be loaded" in output
    assert "sha256" in output and "Traceback" not in output
