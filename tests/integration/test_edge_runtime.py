"""The EdgeRuntime that ``goldenhour edge run`` is: a simulated X-ray unit and a
watched folder feed the agent, everything stops in order, the outbox keeps what
it holds, and a source that cannot start stops what had started. In-memory
broker; real SQLite outbox, watched folder and DICOM port."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox
from edge_agent.runtime import EdgeRuntime, XraySources
from edge_agent.settings import PLACEHOLDER, load_edge_settings
from shared.errors import ConfigurationError
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
