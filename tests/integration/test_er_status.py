"""ER status on a real Mosquitto and PostgreSQL: an ER client killed outright
(its broker connection dies with it, the broker publishes its last will) gets
no new offer once its will is out, and its open offers pass to the next ER
after the grace."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, col, select

from hospital_hub.models import Offer, OfferState
from hospital_hub.registry import read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from hospital_hub.simulated_er import SimulatedEr, always
from shared import topics
from shared.broker import MosquittoBroker
from shared.ids import new_case_id
from shared.messages import decode
from shared.mqtt import Messenger, PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.services import running_mosquitto, wait_until

logger = logging.getLogger(__name__)

GRACE_S = 2.0
NO_ANSWER_S = 3600.0
"""The simulated ERs never answer here: offers stay open."""


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    """A Mosquitto of this module's own: no retained ER status of other tests."""
    with running_mosquitto() as mosquitto:
        yield mosquitto


def _er_process(settings: dict[str, Any], hospital_id: str, ready: Any) -> None:
    er = SimulatedEr.connect(hospital_id, MqttSettings(**settings), always("accept"),
                             delay_s=NO_ANSWER_S)
    er.start()
    ready.set()
    while True:
        time.sleep(1)


def _offers(hub: HubRuntime, case_id: str) -> list[Offer]:
    with Session(hub.engine) as session:
        return list(session.exec(select(Offer).where(Offer.case_id == case_id)
                                 .order_by(col(Offer.rank))).all())


@pytest.mark.postgres
def test_a_killed_er_gets_no_new_offer_after_its_last_will(broker: MosquittoBroker,
                                                           postgres_url: str, uid: str) -> None:
    settings = broker.mqtt_settings(publish_timeout_s=5.0, connect_timeout_s=5.0)
    hub = HubRuntime(load_hub_settings(hub_id=f"er-status-{uid}", mqtt=settings,
                                       database_url=postgres_url, maintenance_interval_s=0.2,
                                       er_offline_grace_s=GRACE_S))
    hub.start()
    others: list[SimulatedEr] = []
    watcher = PahoCommunicator(settings.model_copy(update={"session_expiry_s": 0}),
                               client_id=f"watch-{uid}")
    edge = Messenger(PahoCommunicator(settings.model_copy(update={"session_expiry_s": 0}),
                                      client_id=f"edge-{uid}"), sender="amb-1")
    process = None
    try:
        watcher.start()
        edge.communicator.start()

        def send_case() -> str:
            case_id = new_case_id()
            edge.send(topics.CASE_DIAGNOSIS, samples.diagnosis(), case_id=case_id,
                      ambulance_id="amb-1")
            return case_id

        probe = send_case()
        assert wait_until(lambda: len(_offers(hub, probe)) == 3, timeout=10)
        victim = _offers(hub, probe)[0].hospital_id  # the ER this case ranks first
        for hospital in read_registry(SAMPLE_REGISTRY):
            if hospital.id != victim:
                er = SimulatedEr.connect(hospital.id, settings, always("accept"),
                                         client_id=f"er-{hospital.id}-{uid}",
                                         delay_s=NO_ANSWER_S)
                er.start()
                others.append(er)
        context = mp.get_context("spawn")
        ready = context.Event()
        process = context.Process(target=_er_process, daemon=True, args=(
            {"host": settings.host, "port": settings.port}, victim, ready))
        process.start()
        assert ready.wait(30)
        assert wait_until(lambda: hub.presence.snapshot().get(victim) is not None
                          and hub.presence.snapshot()[victim].online, timeout=5)
        wills: list[float] = []
        offered_to_victim: list[float] = []
        watcher.subscribe(topics.ER_STATUS.topic(hospital_id=victim), lambda topic, data: (
            wills.append(time.time()) if decode(data).payload.state == "offline" else None))
        watcher.subscribe(topics.ER_OFFER.subscription(hospital_id=victim), lambda topic, data: (
            offered_to_victim.append(time.time()) if decode(data).payload.state == "open"
            else None))

        process.kill()  # no goodbye: the broker publishes the ER's last will
        assert wait_until(lambda: wills, timeout=10), "the broker did not publish the will"
        will_at = wills[0]
        assert wait_until(lambda: victim in hub.presence.offline(), timeout=5)
        reaction_s = time.time() - will_at
        cases = []
        for _ in range(25):  # a case every 0.2 s for the 5 s after the will
            cases.append(send_case())
            time.sleep(0.2)
        assert wait_until(lambda: all(len(_offers(hub, c)) == 3 for c in cases), timeout=15)
        assert not any(o.hospital_id == victim for c in cases for o in _offers(hub, c))
        late = [t - will_at for t in offered_to_victim if t > will_at]
        assert late == [], f"offers reached the killed ER {late} s after its will"
        logger.warning("killed ER ranked out %.3f s after its will was heard", reaction_s)

        # after the grace, its open offer of the first case passes to the next ER
        assert wait_until(lambda: any(o.hospital_id == victim and o.state == OfferState.WITHDRAWN
                                      for o in _offers(hub, probe)), timeout=GRACE_S + 5)
        open_now = [o.hospital_id for o in _offers(hub, probe) if o.state == OfferState.OPEN]
        assert victim not in open_now and len(open_now) == 3
    finally:
        if process is not None and process.is_alive():
            process.kill()
        for er in others:
            er.stop()
        edge.communicator.stop()
        watcher.stop()
        hub.stop()
