"""Store and forward over a real Mosquitto: cases made while the broker is
away arrive when it comes back, in order, and full images pass a broker whose
packets are limited to 1 MB (EMQX's default)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub.models import Case, CaseImage
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from hospital_hub.simulated_er import SimulatedEr, always
from shared.broker import MosquittoBroker, free_port
from shared.messages import CHUNK_BYTES
from tests.images import chest_like_png
from tests.services import wait_until

HOSPITALS = ("bos-mgh", "bos-tufts", "bos-bmc", "bos-bwh", "bos-bidmc", "bos-stelizabeth")


@pytest.fixture
def big_png(tmp_path: Path) -> Path:
    """A 3.4 MB chest-like 16-bit PNG: 14 chunks through a 1 MB packet limit."""
    return chest_like_png(tmp_path / "big.png", size=1400, seed=11, bits=16)


@pytest.fixture
def system(tmp_path: Path, uid: str
           ) -> Iterator[tuple[MosquittoBroker, HubRuntime, EdgeAgent, list[SimulatedEr]]]:
    """An ambulance started in a dead zone; broker, hub and ERs not started yet."""
    port = free_port()
    broker = MosquittoBroker(port=port, workdir=tmp_path / "broker", max_packet_size=1024 * 1024)
    (tmp_path / "broker").mkdir()
    settings = broker.mqtt_settings(reconnect_min_s=0.2, reconnect_max_s=1.0,
                                    publish_timeout_s=5, connect_timeout_s=5)
    edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=settings,
                                        lat=42.3631, lon=-71.0686))
    edge.start(wait=False)  # the ambulance is in a dead zone: no broker yet
    hub = HubRuntime(load_hub_settings(hub_id=f"hub-{uid}", mqtt=settings,
                                       database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                                       maintenance_interval_s=0.2))
    ers = [SimulatedEr.connect(h, settings, always("accept"), client_id=f"er-{h}-{uid}",
                               delay_s=0.05) for h in HOSPITALS]
    try:
        yield broker, hub, edge, ers
    finally:
        edge.stop()
        for er in ers:
            er.stop()
        hub.stop()
        broker.cleanup()


def test_cases_made_offline_arrive_in_order_with_their_full_images(
        system, xray: Path, big_png: Path) -> None:  # type: ignore[no-untyped-def]
    broker, hub, edge, ers = system
    records = [edge.submit(xray), edge.submit(big_png), edge.submit(xray)]
    big_chunks = -(-big_png.stat().st_size // CHUNK_BYTES)
    count, size = edge.outbox.pending()
    assert count == 3 + 1 + big_chunks + 1 and size > 3 * 1024 * 1024  # diagnoses, then chunks
    assert not any(r.sent.is_set() for r in records)

    broker.start()  # out of the dead zone
    hub.start()
    for er in ers:
        er.start()
    for record in records:
        done = edge.wait_for_decision(record.case_id, timeout=30)
        assert done.decision is not None and done.decision.status == "accepted"
    assert wait_until(lambda: edge.outbox.pending() == (0, 0), timeout=30)
    # The hub confirmed every diagnosis and every full image end to end.
    assert wait_until(lambda: edge.outbox.unconfirmed() == 0, timeout=30)
    with Session(hub.engine) as session:
        received = session.exec(select(Case).order_by(Case.received_at)).all()
        images = {i.case_id: i for i in session.exec(select(CaseImage)).all()}
    assert [c.id for c in received] == [r.case_id for r in records]  # order kept
    big = images[records[1].case_id]
    assert big.complete and big.chunk_count == big_chunks
    assert big.data is not None and hashlib.sha256(big.data).hexdigest() == \
        hashlib.sha256(big_png.read_bytes()).hexdigest()
    assert all(images[r.case_id].complete for r in records)
