"""PACS push on acceptance, against a real pynetdicom storage SCP on a free
loopback port, on SQLite and PostgreSQL: what arrives, retries while the
PACS is down or refuses, ERs without a PACS, the full image arriving late, a
divert, and the hub runtime's own background thread."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation  # type: ignore[attr-defined]
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hospital_hub.cases import CaseService
from hospital_hub.db import make_engine, migrate
from hospital_hub.images import ImageStore
from hospital_hub.models import CaseEvent, Hospital, Offer, PacsPush, utcnow
from hospital_hub.pacs import PacsPusher
from hospital_hub.registry import import_registry, read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from shared.errors import ConfigurationError
from shared.messages import CaseUpdateV1, Envelope, ImageChunkV1
from shared.settings import MqttSettings
from tests import samples
from tests.hospital_formats import diagnosis, dicom_xray, png_xray
from tests.services import wait_until

CASE = samples.CASE_ID
AMBULANCE = "amb-1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class StorageScp:
    """A real C-STORE SCP that keeps what it receives; ``refuse`` makes it
    answer the next stores with 0xA700 (out of resources) after keeping them."""

    port: int = field(default_factory=_free_port)
    ae_title: str = "TESTPACS"
    received: list[Dataset] = field(default_factory=list)
    refuse: int = 0
    _server: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _on_store(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.received.append(dataset)
            if self.refuse > 0:
                self.refuse -= 1
                return 0xA700
        return 0x0000

    def start(self) -> None:
        ae = AE(ae_title=self.ae_title)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None


@pytest.fixture
def scp() -> Iterator[StorageScp]:
    pacs = StorageScp()
    yield pacs
    pacs.stop()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    import_registry(engine, SAMPLE_REGISTRY)
    yield engine
    engine.dispose()


def _service(engine: Engine, database_url: str) -> CaseService:
    return CaseService(engine, load_hub_settings(database_url=database_url, hub_id="hub-test"))


def _send_image(engine: Engine, data: bytes, media_type: str = "application/dicom") -> None:
    sha = hashlib.sha256(data).hexdigest()
    chunk = ImageChunkV1(ambulance_id=AMBULANCE, image_sha256=sha, media_type=media_type,  # type: ignore[arg-type]
                         total_bytes=len(data), index=0, count=1, sha256=sha, data=data)
    assert ImageStore(engine, sender="hub-test").receive_chunk(
        CASE, Envelope.wrap(chunk, sender=AMBULANCE, case_id=CASE))


def _new_case(service: CaseService, engine: Engine, image: bytes, fmt: str = "dicom",
              heat_maps: bool = True) -> str:
    """A case offered to three ERs; returns the first one offered."""
    result = diagnosis(image, fmt, heat_maps, ambulance_id=AMBULANCE)
    assert service.receive_diagnosis(Envelope.wrap(result, sender=AMBULANCE, case_id=CASE))
    with Session(engine) as session:
        return session.exec(select(Offer.hospital_id).where(Offer.case_id == CASE)
                            .order_by(Offer.rank)).first()  # type: ignore[return-value]


def _set_pacs(engine: Engine, hospital_id: str, scp: StorageScp) -> None:
    with Session(engine) as session:
        hospital = session.get(Hospital, hospital_id)
        assert hospital is not None
        hospital.pacs_ae_title, hospital.pacs_host, hospital.pacs_port = scp.ae_title, "127.0.0.1", scp.port
        session.add(hospital)
        session.commit()


def _rows(engine: Engine) -> dict[str, PacsPush]:
    with Session(engine) as session:
        return {r.what: r for r in session.exec(select(PacsPush).where(PacsPush.case_id == CASE)).all()}


def _events(engine: Engine, prefix: str = "pacs_") -> list[str]:
    with Session(engine) as session:
        return [e.kind for e in session.exec(select(CaseEvent).where(CaseEvent.case_id == CASE)
                                             .order_by(CaseEvent.id)).all() if e.kind.startswith(prefix)]


def _check_arrivals(received: list[Dataset]) -> None:
    """Image, SR and SC, in that order, in one study, the results referencing the image."""
    image, sr, sc = received
    assert [d.SOPClassUID for d in received] == [DigitalXRayImageStorageForPresentation,
                                                 Comprehensive3DSRStorage, SecondaryCaptureImageStorage]
    assert len({d.StudyInstanceUID for d in received}) == 1
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    assert sr.VerificationFlag == "UNVERIFIED"


def test_accepted_case_arrives_in_the_pacs(engine: Engine, database_url: str, scp: StorageScp) -> None:
    service = _service(engine, database_url)
    image = dicom_xray()
    hospital = _new_case(service, engine, image)
    _send_image(engine, image)
    _set_pacs(engine, hospital, scp)
    scp.start()
    assert service.decide(CASE, hospital, "accept", decided_by="Dr A").outcome == "accepted"
    assert set(_rows(engine)) == {"image", "sr", "sc"}
    assert PacsPusher(engine).run_once() == 3
    _check_arrivals(scp.received)
    rows = _rows(engine)
    assert all(r.status == "sent" and r.sent_at and r.attempts == 1 and r.data is None
               for r in rows.values())
    assert [rows[w].sop_instance_uid for w in ("image", "sr", "sc")] == [
        d.SOPInstanceUID for d in scp.received]
    assert _events(engine) == ["pacs_queued", "pacs_stored", "pacs_stored", "pacs_stored"]
    assert PacsPusher(engine).run_once() == 0 and len(scp.received) == 3  # nothing twice


def test_pacs_down_then_up_and_a_refusal_resends_the_same_uids(
        engine: Engine, database_url: str, scp: StorageScp) -> None:
    service = _service(engine, database_url)
    image = png_xray()
    hospital = _new_case(service, engine, image, fmt="png")
    _send_image(engine, image, "image/png")
    _set_pacs(engine, hospital, scp)  # configured, but not listening yet
    service.decide(CASE, hospital, "accept", decided_by="Dr A")
    pusher = PacsPusher(engine, retry_initial_s=5, retry_max_s=60, timeout_s=5)
    now = utcnow()
    assert pusher.run_once(now) == 0
    rows = _rows(engine)
    assert all(r.status == "pending" and r.attempts == 1 and r.data for r in rows.values())
    assert all("could not be reached" in (r.last_error or "") for r in rows.values())
    assert pusher.run_once(now + timedelta(seconds=1)) == 0  # not due: backing off
    assert _rows(engine)["sr"].attempts == 1

    scp.start()
    scp.refuse = 3  # stored, but the answers are failures: as if the ack were lost
    assert pusher.run_once(now + timedelta(seconds=6)) == 0
    assert len(scp.received) == 3 and all(r.attempts == 2 for r in _rows(engine).values())
    assert "0xA700" in (_rows(engine)["image"].last_error or "")
    assert pusher.run_once(now + timedelta(seconds=7)) == 0  # 10 s after the second failure
    assert pusher.run_once(now + timedelta(seconds=17)) == 3
    first, again = scp.received[:3], scp.received[3:]
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    assert [d.SOPClassUID for d in again] == [SecondaryCaptureImageStorage, Comprehensive3DSRStorage,
                                              SecondaryCaptureImageStorage]  # the PNG, wrapped
    assert all(r.status == "sent" and r.attempts == 3 for r in _rows(engine).values())


def test_er_without_pacs_gets_nothing_and_the_case_says_so(
        engine: Engine, database_url: str, scp: StorageScp) -> None:
    service = _service(engine, database_url)
    image = dicom_xray()
    hospital = _new_case(service, engine, image)
    _send_image(engine, image)
    scp.start()
    service.decide(CASE, hospital, "accept", decided_by="Dr A")
    assert _rows(engine) == {}
    assert _events(engine) == ["pacs_skipped"]
    with Session(engine) as session:
        event = session.exec(select(CaseEvent).where(CaseEvent.kind == "pacs_skipped")).one()
    assert event.detail["hospital_id"] == hospital and "no PACS" in event.detail["reason"]
    assert PacsPusher(engine).run_once() == 0 and scp.received == []


def test_push_waits_for_the_full_image_and_a_divert_withdraws_it(
        engine: Engine, database_url: str, scp: StorageScp) -> None:
    service = _service(engine, database_url)
    image = dicom_xray()
    hospital = _new_case(service, engine, image, heat_maps=False)
    _set_pacs(engine, hospital, scp)
    scp.start()
    service.decide(CASE, hospital, "accept", decided_by="Dr A")
    assert set(_rows(engine)) == {"image", "sr"}  # no heat map, no SC
    pusher = PacsPusher(engine, retry_initial_s=2)
    now = utcnow()
    assert pusher.run_once(now) == 0
    waiting = _rows(engine)["sr"]
    assert waiting.attempts == 0 and "no full image" in (waiting.last_error or "")
    _send_image(engine, image)
    assert pusher.run_once(now + timedelta(seconds=3)) == 2
    assert [d.SOPClassUID for d in scp.received] == [DigitalXRayImageStorageForPresentation,
                                                     Comprehensive3DSRStorage]

    # Accepted again elsewhere after a divert: the released ER's pending pushes are dropped.
    with Session(engine) as session:
        for row in session.exec(select(PacsPush)).all():
            row.status, row.data = "pending", b"stale"
            session.add(row)
        session.commit()
    service.update_case(CASE, CaseUpdateV1(ambulance_id=AMBULANCE, action="divert", reason="closer ER"))
    assert {r.status for r in _rows(engine).values()} == {"abandoned"}
    assert all(r.data is None for r in _rows(engine).values())
    assert "pacs_withdrawn" in _events(engine)
    assert pusher.run_once(now + timedelta(hours=1)) == 0 and len(scp.received) == 2


def test_registry_columns_set_an_ers_pacs(tmp_path: Path) -> None:
    header = SAMPLE_REGISTRY.read_text().splitlines()[0]
    rows = SAMPLE_REGISTRY.read_text().splitlines()[1:3]
    csv = tmp_path / "registry.csv"
    csv.write_text("\n".join([header + ",pacs_ae_title,pacs_host,pacs_port",
                              rows[0] + ",MGH_PACS,pacs.example.org,104", rows[1] + ",,,"]) + "\n")
    first, second = read_registry(csv)
    assert (first.pacs_ae_title, first.pacs_host, first.pacs_port) == ("MGH_PACS", "pacs.example.org", 104)
    assert (second.pacs_ae_title, second.pacs_host, second.pacs_port) == (None, None, None)
    csv.write_text("\n".join([header + ",pacs_ae_title,pacs_host", rows[0] + ",MGH_PACS,pacs.example.org"]))
    with pytest.raises(ConfigurationError, match="pacs_port"):
        read_registry(csv)


def test_the_hub_runtime_pushes_in_the_background(
        tmp_path: Path, mqtt_settings: MqttSettings, uid: str, scp: StorageScp) -> None:
    header, *rows = SAMPLE_REGISTRY.read_text().splitlines()
    csv = tmp_path / "registry.csv"
    csv.write_text("\n".join([header + ",pacs_ae_title,pacs_host,pacs_port",
                              *(f"{row},{scp.ae_title},127.0.0.1,{scp.port}" for row in rows)]) + "\n")
    runtime = HubRuntime(load_hub_settings(
        hub_id=f"pacs-{uid}", database_url=f"sqlite:///{tmp_path / 'hub.db'}", mqtt=mqtt_settings,
        registry_csv=csv, pacs_interval_s=0.1, pacs_retry_initial_s=0.2, pacs_retry_max_s=1))
    runtime.start()
    assert runtime.pacs._loop is not None
    thread = runtime.pacs._loop.thread
    assert thread is not None and thread.is_alive()

    def gauge(name: str) -> float | None:
        return runtime.metrics.registry.get_sample_value(name)

    try:
        image = dicom_xray()
        hospital = _new_case(runtime.cases, runtime.engine, image)
        _send_image(runtime.engine, image)
        runtime.cases.decide(CASE, hospital, "accept", decided_by="Dr A")
        # The PACS is not listening yet: the pushes wait, and /metrics says so.
        assert gauge("goldenhour_hub_pacs_pending") == 3
        assert wait_until(lambda: gauge("goldenhour_hub_pacs_failing") == 3, timeout=30)
        scp.start()
        assert wait_until(lambda: len(scp.received) == 3, timeout=30)
        _check_arrivals(scp.received)
        assert wait_until(lambda: runtime.pacs.pending() == 0)
        assert gauge("goldenhour_hub_pacs_pending") == gauge("goldenhour_hub_pacs_failing") == 0
    finally:
        runtime.stop()
    assert not thread.is_alive()  # stop() ends the push thread
