"""``goldenhour edge run --dicom-port/--watch``: every image a receiver hands
over becomes a queued case; an unusable one is refused loudly and nothing
else is lost (the X-ray unit gets a failure status, the file goes to failed/)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from edge_agent.agent import EdgeAgent
from edge_agent.bench import write_12bit_dicom
from edge_agent.runtime import start_receivers
from edge_agent.settings import load_edge_settings
from tests.images import chest_like, chest_like_png


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[EdgeAgent]:
    edge = EdgeAgent(load_edge_settings(ambulance_id="amb-rx", state_dir=tmp_path / "state",
                                        dicom_host="127.0.0.1"), announce=False)
    yield edge
    edge.outbox.close()


def _push(port: int, path: Path) -> int:
    ds = dcmread(path)
    ae = AE(ae_title="XRAY-UNIT")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="GOLDENHOUR")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_c_store_and_watched_folder_make_cases(agent: EdgeAgent, tmp_path: Path) -> None:
    port, inbox = _free_port(), tmp_path / "inbox"
    receivers = start_receivers(agent.submit, agent.settings, port, inbox)
    try:
        good = tmp_path / "chest.dcm"
        write_12bit_dicom(chest_like(1024).astype(np.uint16) * 16, good)
        assert _push(port, good) == 0x0000
        assert len(agent.cases) == 1
        noise = tmp_path / "noise.dcm"
        write_12bit_dicom(np.random.default_rng(0).integers(0, 4096, (512, 512)).astype(np.uint16), noise)
        assert _push(port, noise) == 0xC000  # "cannot understand": the unit shows it was refused
        assert len(agent.cases) == 1

        chest_like_png(inbox / "from-folder.png", seed=3)
        assert _wait(lambda: (inbox / "done" / "from-folder.png").exists())
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300), dtype=np.uint8)).save(
            inbox / "not-a-chest.png")
        assert _wait(lambda: (inbox / "failed" / "not-a-chest.png").exists())
        reason = next((inbox / "failed").glob("not-a-chest.png*.txt")).read_text()
        assert "not a chest radiograph" in reason
        assert len(agent.cases) == 2
        messages, _ = agent.outbox.pending()
        assert messages >= 2  # both diagnoses wait in the durable outbox (no broker here)
    finally:
        for receiver in receivers:
            receiver.stop()
