"""The hub's offer state machine over an in-memory broker and a real SQLite file.

These are fast, deterministic tests of the logic; the same flow runs over a
real Mosquitto (and PostgreSQL) in tests/integration.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from hospital_hub.models import Case, CaseStatus, Offer, OfferState, utcnow
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.errors import NotFound
from shared.messages import Envelope, ErDecisionV1, decode, encode
from shared.mqtt import InMemoryBroker, InMemoryCommunicator, Messenger
from tests import samples


class World:
    """A hub, an ambulance's messenger and a view of what was published."""

    def __init__(self, tmp_path: Path) -> None:
        self.broker = InMemoryBroker()
        settings = load_hub_settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                                     maintenance_interval_s=3600, offer_count=3)
        self.hub = HubRuntime(settings, communicator=InMemoryCommunicator(self.broker))
        self.hub.start()
        self.edge = Messenger(InMemoryCommunicator(self.broker), sender="amb-1")
        self.edge.communicator.start()
        self.decisions: list[Envelope[Any]] = []
        self.edge.on(topics.CASE_DECISION, lambda e, _: self.decisions.append(e),
                     ambulance_id="amb-1")

    def send_case(self, case_id: str = samples.CASE_ID) -> Envelope[Any]:
        return self.edge.send(topics.CASE_DIAGNOSIS, samples.diagnosis(), case_id=case_id,
                              ambulance_id="amb-1")

    def er(self, hospital_id: str) -> Messenger:
        messenger = Messenger(InMemoryCommunicator(self.broker), sender=hospital_id)
        messenger.communicator.start()
        return messenger

    def answer(self, hospital_id: str, decision: str, case_id: str = samples.CASE_ID) -> None:
        self.er(hospital_id).send(
            topics.ER_DECISION,
            ErDecisionV1(hospital_id=hospital_id, decision=decision, decided_by="Dr T",
                         reason="test: full" if decision == "decline" else None),
            case_id=case_id, hospital_id=hospital_id)

    def offers(self, case_id: str = samples.CASE_ID) -> list[Offer]:
        with Session(self.hub.engine) as session:
            return list(session.exec(select(Offer).where(Offer.case_id == case_id)
                                     .order_by(Offer.rank)).all())

    def case(self, case_id: str = samples.CASE_ID) -> Case | None:
        with Session(self.hub.engine) as session:
            return session.get(Case, case_id)

    def published(self, spec: topics.TopicSpec) -> list[tuple[str, Any]]:
        return [(topic, decode(data).payload) for topic, data, _ in self.broker.published
                if spec.match(topic) is not None]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.hub.stop()


def test_case_is_offered_to_the_three_nearest(world: World) -> None:
    world.send_case()
    offers = world.offers()
    assert [o.rank for o in offers] == [1, 2, 3]
    assert [o.eta_min for o in offers] == sorted(o.eta_min for o in offers)
    published = world.published(topics.ER_OFFER)
    assert {p.hospital_id for _, p in published} == {o.hospital_id for o in offers}
    assert all(p.state == "open" and "not for clinical use" in p.summary for _, p in published)
    case = world.case()
    assert case is not None and case.status == CaseStatus.OFFERED and case.placeholder_model


def test_first_accept_wins_and_others_are_withdrawn(world: World) -> None:
    world.send_case()
    first, second, third = (o.hospital_id for o in world.offers())
    world.answer(second, "accept")
    world.answer(first, "accept")
    case = world.case()
    assert case is not None and case.status == CaseStatus.ACCEPTED
    assert case.accepted_hospital_id == second
    states = {o.hospital_id: o.state for o in world.offers()}
    assert states == {first: OfferState.WITHDRAWN, second: OfferState.ACCEPTED,
                      third: OfferState.WITHDRAWN}
    assert len(world.decisions) == 1
    decision = world.decisions[0].payload
    assert decision.status == "accepted" and decision.hospital_id == second
    withdrawn = [p for _, p in world.published(topics.ER_OFFER) if p.state == "withdrawn"]
    assert {p.hospital_id for p in withdrawn} == {first, third}


def test_declines_move_to_the_next_ers_then_no_er_available(world: World) -> None:
    world.send_case()
    asked: list[str] = []
    while (open_offers := [o for o in world.offers() if o.state == OfferState.OPEN]):
        for offer in open_offers:
            asked.append(offer.hospital_id)
            world.answer(offer.hospital_id, "decline")
    assert len(asked) == len(set(asked)) == 8  # every sample hospital with ER beds, once
    case = world.case()
    assert case is not None and case.status == CaseStatus.NO_ER_AVAILABLE
    assert [d.payload.status for d in world.decisions] == ["no_er_available"]


def test_expired_offers_count_as_declined(world: World) -> None:
    world.send_case()
    first_round = {o.hospital_id for o in world.offers()}
    expired = world.hub.cases.expire_offers(now=utcnow() + timedelta(hours=1))
    world.hub.outbox.flush()
    assert expired == 3
    states = {o.hospital_id: o.state for o in world.offers()}
    assert all(states[h] == OfferState.EXPIRED for h in first_round)
    assert sum(1 for s in states.values() if s == OfferState.OPEN) == 3


def test_duplicate_message_is_applied_once(world: World) -> None:
    envelope = world.send_case()
    data = encode(envelope)
    topic = topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=samples.CASE_ID)
    world.edge.communicator.publish(topic, data)
    world.edge.communicator.publish(topic, data)
    assert len(world.offers()) == 3
    assert len(world.published(topics.ER_OFFER)) == 3


def test_duplicate_decision_is_applied_once(world: World) -> None:
    world.send_case()
    first, second, _ = (o.hospital_id for o in world.offers())
    er = world.er(first)
    envelope = er.send(topics.ER_DECISION,
                       ErDecisionV1(hospital_id=first, decision="decline", decided_by="Dr T",
                                    reason="no CT"),
                       case_id=samples.CASE_ID, hospital_id=first)
    topic = topics.ER_DECISION.topic(hospital_id=first, case_id=samples.CASE_ID)
    er.communicator.publish(topic, encode(envelope))
    assert [o.state for o in world.offers()].count(OfferState.DECLINED) == 1
    world.answer(second, "accept")
    assert world.case().status == CaseStatus.ACCEPTED  # type: ignore[union-attr]


def test_decisions_on_unknown_or_closed_offers_change_nothing(world: World) -> None:
    world.send_case()
    with pytest.raises(NotFound):
        world.hub.cases.decide(samples.CASE_ID, "cam-cha", "accept", decided_by="x")
    world.answer("cam-cha", "accept")  # over MQTT: logged and dropped
    assert world.case().status == CaseStatus.OFFERED  # type: ignore[union-attr]
    offer = world.offers()[0]
    world.answer(offer.hospital_id, "decline")
    result = world.hub.cases.decide(samples.CASE_ID, offer.hospital_id, "accept", decided_by="x")
    assert result.outcome == "already_decided"


def test_an_er_cannot_answer_for_another(world: World) -> None:
    world.send_case()
    victim, _, _ = (o.hospital_id for o in world.offers())
    forged = ErDecisionV1(hospital_id="cam-cha", decision="accept", decided_by="mallory")
    data = encode(Envelope.wrap(forged, sender="cam-cha", case_id=samples.CASE_ID))
    world.er("cam-cha").communicator.publish(
        topics.ER_DECISION.topic(hospital_id=victim, case_id=samples.CASE_ID), data)
    assert world.case().status == CaseStatus.OFFERED  # type: ignore[union-attr]
    assert world.hub.messenger.rejected["TopicMismatch"] == 1


def test_outbox_holds_messages_while_the_broker_is_away(world: World) -> None:
    world.send_case()
    first = world.offers()[0].hospital_id
    world.hub.communicator.stop()  # the hub loses its broker
    world.hub.cases.decide(samples.CASE_ID, first, "accept", decided_by="console")
    world.hub.outbox.flush()
    assert world.hub.outbox.pending() == 4  # decision, 2 withdrawals, case status: kept
    assert world.decisions == []
    world.hub.communicator.start()
    assert world.hub.outbox.flush() == 4
    assert world.hub.outbox.pending() == 0
    assert [d.payload.status for d in world.decisions] == ["accepted"]


def test_retained_status_and_last_will(world: World) -> None:
    broker = world.broker
    from shared.mqtt import status_will

    will = status_will(topics.AMBULANCE_STATUS, "amb-9", "edge", ambulance_id="amb-9")
    client = InMemoryCommunicator(broker, last_will=will)
    client.start()
    topic = topics.AMBULANCE_STATUS.topic(ambulance_id="amb-9")
    assert decode(broker.retained[topic]).payload.state == "online"
    client.crash()
    assert decode(broker.retained[topic]).payload.state == "offline"
