"""Two hub workers share one PostgreSQL and one Mosquitto through an MQTT 5
shared subscription: every case is stored once, offered once per ER, and of
two simultaneous accepts exactly one wins."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlmodel import Session, func, select

from hospital_hub.models import Case, CaseEvent, CaseStatus
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.ids import new_case_id
from shared.messages import Envelope, ErDecisionV1, decode, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.services import wait_until

pytestmark = pytest.mark.postgres
CASES = 30


@pytest.fixture
def workers(postgres_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[list[HubRuntime]]:
    runtimes = [HubRuntime(load_hub_settings(hub_id=f"w{n}-{uid}", database_url=postgres_url,
                                             mqtt=mqtt_settings, share_group=f"hub{uid}",
                                             maintenance_interval_s=0.2))
                for n in (1, 2)]
    for runtime in runtimes:
        runtime.start()
    yield runtimes
    for runtime in runtimes:
        runtime.stop()


def test_two_workers_split_cases_without_double_offers_and_one_accept_wins(
        workers: list[HubRuntime], mqtt_settings: MqttSettings, uid: str) -> None:
    ambulance = f"amb-{uid}"
    offers: list[tuple[str, str, str]] = []
    decisions: Counter[str] = Counter()
    lock = threading.Lock()

    def on_offer(topic: str, data: bytes) -> None:
        envelope = decode(data)
        with lock:
            offers.append((envelope.case_id, envelope.payload.hospital_id, envelope.payload.state))

    def on_decision(topic: str, data: bytes) -> None:
        envelope = decode(data)
        if envelope.payload.status == "accepted":
            with lock:
                decisions[envelope.case_id] += 1

    watcher = PahoCommunicator(mqtt_settings, client_id=f"watch-{uid}")
    watcher.subscribe(topics.ER_OFFER.subscription(), on_offer)
    watcher.subscribe(topics.CASE_DECISION.subscription(ambulance_id=ambulance), on_decision)
    watcher.start()
    sender = PahoCommunicator(mqtt_settings, client_id=f"send-{uid}")
    sender.start()
    try:
        case_ids = [new_case_id() for _ in range(CASES)]
        for case_id in case_ids:
            envelope = Envelope.wrap(samples.diagnosis(ambulance_id=ambulance), sender=ambulance,
                                     case_id=case_id)
            sender.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance, case_id=case_id),
                           encode(envelope))

        def opened() -> Counter[str]:
            with lock:
                return Counter(case for case, _, state in offers if state == "open")

        assert wait_until(lambda: len(opened()) == CASES and set(opened().values()) == {3},
                          timeout=60), opened()
        with lock:
            pairs = Counter((case, hospital) for case, hospital, state in offers
                            if state == "open")
        assert max(pairs.values()) == 1, "an ER was offered the same case twice"

        engine = workers[0].engine
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(Case)).one() == CASES
            actors = set(session.exec(select(CaseEvent.actor)
                                      .where(CaseEvent.kind == "offered")).all())
        assert actors == {w.settings.hub_id for w in workers}, "one worker did all the work"

        # Two ERs accept each case at the same moment; the messages may reach different workers.
        with lock:
            first_two = {case: [h for c, h, s in offers if c == case and s == "open"][:2]
                         for case in case_ids}
        for case_id, hospitals in first_two.items():
            for hospital in hospitals:
                decision = Envelope.wrap(ErDecisionV1(hospital_id=hospital, decision="accept",
                                                      decided_by=f"Dr at {hospital}"),
                                         sender=hospital, case_id=case_id)
                sender.publish(topics.ER_DECISION.topic(hospital_id=hospital, case_id=case_id),
                               encode(decision))
        assert wait_until(lambda: len(decisions) == CASES, timeout=60)
        assert set(decisions.values()) == {1}, "a case was placed twice"
        with Session(engine) as session:
            statuses = session.exec(select(Case.status)).all()
        assert set(statuses) == {CaseStatus.ACCEPTED}
    finally:
        sender.stop()
        watcher.stop()
