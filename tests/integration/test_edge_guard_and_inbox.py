"""Issue 20, the edge: a turned film or another body part sent by C-STORE is
refused with a failure status and an Error Comment (defects 2, 11); the DICOM
inbox is private and does not keep patients' files (defect 5); decisions that
contradict the offers are ignored (defect 8, through a real Mosquitto)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from edge_agent.agent import EdgeAgent
from edge_agent.bench import write_12bit_dicom
from edge_agent.imaging import load_image
from edge_agent.receivers.dicom_scp import DicomStorageSCP
from edge_agent.runtime import start_receivers
from edge_agent.settings import load_edge_settings
from edge_agent.web import views
from shared import topics
from shared.messages import CaseDecisionV1, CaseStatusV1, OfferSummary, Position
from shared.mqtt import Messenger, PahoCommunicator
from shared.settings import MqttSettings
from tests.images import chest_like, chest_like_png


def _free_port() -> int:
    import socket

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
    edge = EdgeAgent(load_edge_settings(ambulance_id="amb-guard", state_dir=tmp_path / "state",
                                        dicom_host="127.0.0.1", model="placeholder"), announce=False)
    yield edge
    edge.outbox.close()


def _dicom(pixels: np.ndarray, path: Path, **header: str) -> Path:
    """A 12-bit DX of ``pixels`` (8-bit) with extra header values, e.g. BodyPartExamined."""
    write_12bit_dicom(pixels.astype(np.uint16) * 16, path)
    dataset = dcmread(path)
    dataset.PatientName = "Doe^Jane"
    for key, value in header.items():
        setattr(dataset, key, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def _store(port: int, path: Path) -> Dataset:
    """Send ``path`` with pynetdicom's SCU, as an X-ray unit would; the response status."""
    dataset = dcmread(path)
    ae = AE(ae_title="XRAY-UNIT")
    ae.add_requested_context(dataset.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="GOLDENHOUR")
    assert assoc.is_established
    try:
        return assoc.send_c_store(dataset)
    finally:
        assoc.release()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.realdata
def test_turned_film_and_skull_are_refused_with_an_error_comment_and_not_kept_long(
        agent: EdgeAgent, tmp_path: Path, data_folder: Path) -> None:
    film = load_image(data_folder / "nih-cxr14-sample" / "images" / "00000001_000.png").pixels
    port = _free_port()
    receivers = start_receivers(agent.submit, agent.settings, port, None)
    inbox = agent.settings.state_dir / "dicom-inbox"
    try:
        upright = _store(port, _dicom(film, tmp_path / "upright.dcm", BodyPartExamined="CHEST"))
        assert upright.Status == 0x0000
        assert len(agent.cases) == 1
        assert list(inbox.glob("*.dcm")) == []  # its case is in the outbox: the object is gone

        turned = _store(port, _dicom(np.rot90(film, 3), tmp_path / "turned.dcm"))
        assert turned.Status == 0xC000
        assert "rotated 90 degrees clockwise" in turned.ErrorComment
        skull = _store(port, _dicom(film, tmp_path / "skull.dcm", BodyPartExamined="SKULL"))
        assert skull.Status == 0xC000
        assert skull.ErrorComment.startswith("Body Part Examined 'SKULL' is not the chest")
        ct = _store(port, _dicom(film, tmp_path / "ct.dcm", Modality="CT"))
        assert ct.Status == 0xC000 and "Modality 'CT'" in ct.ErrorComment
        assert len(agent.cases) == 1  # none of them became a case

        assert _mode(inbox) == 0o700
        assert list(inbox.glob("*.dcm")) == []
        refused = sorted((inbox / "refused").glob("*.dcm"))
        assert len(refused) == 3
        for path in refused:
            assert _mode(path) == 0o600
            note = path.with_name(path.name + ".error.txt")
            assert _mode(note) == 0o600 and note.read_text().startswith("NotChestRadiographError")
    finally:
        for receiver in receivers:
            receiver.stop()


def test_inbox_is_private_and_cleaned_at_start_within_its_budget(tmp_path: Path) -> None:
    inbox = tmp_path / "dicom-inbox"
    (inbox / "refused").mkdir(parents=True)
    os.chmod(inbox, 0o755)  # as an earlier version left it
    old = time.time() - 3 * 3600
    leftovers = {"left-over.dcm": old, ".x.dcm.1.part": time.time(), "recent.dcm": time.time()}
    for name, when in leftovers.items():
        (inbox / name).write_bytes(b"patient data")
        os.utime(inbox / name, (when, when))
    for index in range(4):  # refused objects, one past the retention, 3 within
        path = inbox / "refused" / f"r{index}.dcm"
        path.write_bytes(b"x" * 1000)
        (inbox / "refused" / f"r{index}.dcm.error.txt").write_text("why")
        when = old if index == 0 else time.time() - 60 + index
        os.utime(path, (when, when))
    calls: list[Path] = []
    scp = DicomStorageSCP(inbox, calls.append, port=0, host="127.0.0.1", retention_s=3600, max_bytes=2500)
    scp.start()
    try:
        assert _mode(inbox) == 0o700 and _mode(inbox / "refused") == 0o700
        assert sorted(p.name for p in inbox.iterdir()) == ["recent.dcm", "refused"]
        # r0 past the retention; r1 the oldest over the 2,500-byte budget
        assert sorted(p.name for p in (inbox / "refused").glob("*.dcm")) == ["r2.dcm", "r3.dcm"]
        assert sorted(p.name for p in (inbox / "refused").glob("*.txt")) == ["r2.dcm.error.txt",
                                                                           "r3.dcm.error.txt"]
        assert scp.store.usage() == (3, len(b"patient data") + 2000)
    finally:
        scp.stop()


# --- defect 8: decisions that contradict the offers, through Mosquitto ----------------------------------


@pytest.fixture
def hub_voice(mqtt_settings: MqttSettings, uid: str) -> Iterator[Messenger]:
    """A client publishing as the hub would."""
    client = PahoCommunicator(mqtt_settings, client_id=f"fake-hub-{uid}")
    client.start()
    yield Messenger(client, sender=f"hub-{uid}")
    client.stop()


def test_decision_for_an_er_never_offered_and_late_no_er_are_ignored(
        mqtt_settings: MqttSettings, uid: str, tmp_path: Path, hub_voice: Messenger) -> None:
    edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings, model="placeholder",
                                        state_dir=tmp_path / "edge"), announce=False)
    edge.start()
    try:
        record = edge.submit(chest_like_png(tmp_path / "x.png"))
        ids = {"ambulance_id": edge.ambulance_id, "case_id": record.case_id}
        offers = [OfferSummary(hospital_id=h, hospital_name=h.upper(), state="open", eta_min=6)
                  for h in ("bos-mgh", "bos-bmc")]
        hub_voice.send(topics.CASE_STATUS, CaseStatusV1(state="offered", offers=offers, message="offered"),
                       timeout=10, **ids)
        assert _wait(lambda: edge.cases[record.case_id].status is not None)

        stranger = CaseDecisionV1(status="accepted", hospital_id="bos-tufts", hospital_name="Tufts",
                                  destination=Position(lat=42.35, lon=-71.06), eta_min=5,
                                  message="Tufts accepts")
        hub_voice.send(topics.CASE_DECISION, stranger, timeout=10, **ids)
        ignored = edge.metrics.decisions_ignored.labels(reason="not_offered")
        assert _wait(lambda: ignored._value.get() == 1)
        assert edge.cases[record.case_id].decision is None

        accepted = stranger.model_copy(update={"hospital_id": "bos-mgh", "hospital_name": "MGH",
                                               "message": "MGH accepts"})
        hub_voice.send(topics.CASE_DECISION, accepted, timeout=10, **ids)
        assert _wait(lambda: edge.cases[record.case_id].decision is not None)
        late = CaseDecisionV1(status="no_er_available", message="No ER accepted (asked 2)")
        hub_voice.send(topics.CASE_DECISION, late, timeout=10, **ids)
        after = edge.metrics.decisions_ignored.labels(reason="after_acceptance")
        assert _wait(lambda: after._value.get() == 1)
        view = views.case(edge, record.case_id)
        assert view is not None and view.decision is not None
        assert view.decision.status == "accepted" and view.decision.hospital_id == "bos-mgh"
    finally:
        edge.stop()


def test_edge_send_leaves_no_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when the broker cannot be reached (the folder used to stay behind every run)."""
    import tempfile

    from typer.testing import CliRunner

    from edge_agent.cli import app

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("GOLDENHOUR_EDGE_MQTT__PORT", str(_free_port()))
    monkeypatch.setenv("GOLDENHOUR_EDGE_MQTT__CONNECT_TIMEOUT_S", "1")
    monkeypatch.setenv("GOLDENHOUR_EDGE_MODEL", "placeholder")
    result = CliRunner().invoke(app, ["send", str(chest_like_png(tmp_path / "x.png"))])
    assert result.exit_code == 2, result.output
    assert list(scratch.iterdir()) == []


def test_chest_like_is_still_accepted_by_c_store(agent: EdgeAgent, tmp_path: Path) -> None:
    """A synthetic upright film with BodyPartExamined CHEST and Modality DX is a case."""
    port = _free_port()
    receivers = start_receivers(agent.submit, agent.settings, port, None)
    try:
        status = _store(port, _dicom(chest_like(512), tmp_path / "c.dcm", BodyPartExamined="CHEST"))
        assert status.Status == 0x0000 and len(agent.cases) == 1
    finally:
        for receiver in receivers:
            receiver.stop()


@pytest.mark.realdata
def test_crew_page_says_why_an_upload_is_refused(tmp_path: Path, data_folder: Path) -> None:
    """A turned film and half a JPEG uploaded on the crew page: the reason, naming
    the "uploaded image", never a temporary file or a memory buffer."""
    import io
    import re

    from fastapi.testclient import TestClient
    from PIL import Image

    from edge_agent.web import create_app

    film = load_image(data_folder / "nih-cxr14-sample" / "images" / "00000001_000.png").pixels
    turned = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(film, 3))).save(turned, "PNG")
    whole = io.BytesIO()
    Image.fromarray(film).save(whole, "JPEG", quality=90)
    half = whole.getvalue()[:len(whole.getvalue()) // 2] + b"\xff\xd9"
    edge = EdgeAgent(load_edge_settings(ambulance_id="amb-crew", state_dir=tmp_path / "state",
                                        model="placeholder"), announce=False)
    try:
        with TestClient(create_app(edge)) as crew:
            token = re.search(r'name="csrf_token" value="([^"]+)"', crew.get("/").text)
            assert token is not None
            pages = {name: crew.post("/cases", data={"csrf_token": token.group(1)},
                                     files={"xray": (f"Doe-Jane.{name}", data, "application/octet-stream")})
                     for name, data in (("png", turned.getvalue()), ("jpg", half))}
    finally:
        edge.outbox.close()
    assert pages["png"].status_code == 400
    assert "the film looks rotated 90 degrees clockwise" in pages["png"].text
    assert pages["jpg"].status_code == 400 and "JPEG data ends early" in pages["jpg"].text
    for page in pages.values():
        assert "crew-xray" not in page.text and "BytesIO" not in page.text and "Doe-Jane" not in page.text
    assert edge.cases == {}


def test_edge_send_leaves_no_temporary_folder_after_a_decision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_system: Callable[..., object],
        mqtt_settings: MqttSettings) -> None:
    import tempfile

    from typer.testing import CliRunner

    from edge_agent.cli import app

    make_system(f"sqlite:///{tmp_path / 'hub.db'}")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("GOLDENHOUR_EDGE_MQTT__HOST", mqtt_settings.host)
    monkeypatch.setenv("GOLDENHOUR_EDGE_MQTT__PORT", str(mqtt_settings.port))
    monkeypatch.setenv("GOLDENHOUR_EDGE_MODEL", "placeholder")
    result = CliRunner().invoke(app, ["send", str(chest_like_png(tmp_path / "x.png")), "--timeout", "60"])
    assert result.exit_code == 0, result.output
    assert "accepts the patient" in result.output
    assert list(scratch.iterdir()) == []
