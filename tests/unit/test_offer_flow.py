"""The hub's offer state machine over an in-memory broker and a real SQLite file.

These are fast, deterministic tests of the logic; the same flow runs over a
real Mosquitto (and PostgreSQL) in tests/integration. ``world`` is the fixture of
tests/conftest.py (:class:`tests.hub_world.World`).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from hospital_hub.models import CaseStatus, OfferState, utcnow
from shared import topics
from shared.errors import NotFound
from shared.messages import Envelope, ErDecisionV1, decode, encode
from shared.mqtt import InMemoryCommunicator
from tests import samples
from tests.hub_world import World


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
