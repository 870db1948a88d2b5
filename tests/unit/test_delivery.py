"""The delivery path both outboxes share (shared/mqtt/delivery.py): the envelope
builder's checks, and a refused message set aside without blocking the rest,
over an in-memory broker (the edge's outbox: tests/unit/test_edge_outbox.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from hospital_hub.db import make_engine, migrate, session_scope
from hospital_hub.models import DeadLetter, OutboxMessage
from hospital_hub.outbox import Outbox, enqueue
from shared import topics
from shared.errors import BrokerUnavailable, PublishRefused, TopicMismatch
from shared.messages import DispatchAlertV1, PositionV1, decode
from shared.mqtt import InMemoryBroker, InMemoryCommunicator, OutgoingMessage, build_message, deliver
from tests import samples


class _Refusing(InMemoryCommunicator):
    """A broker whose ACL forbids topics containing 'forbidden' (MQTT 5 PUBACK 0x87)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout: float | None = None) -> None:
        if "forbidden" in topic:
            raise PublishRefused(f"not authorized: {topic}", reason_code=0x87)
        super().publish(topic, payload, qos=qos, retain=retain, timeout=timeout)

    def publish_many(self, messages: list[tuple[str, bytes, int, bool]], timeout: float | None = None) -> int:
        done = 0
        for topic, payload, qos, retain in messages:
            if "forbidden" in topic:
                break
            super().publish(topic, payload, qos=qos, retain=retain)
            done += 1
        return done


def test_the_builder_checks_the_payload_and_fills_the_topic() -> None:
    message = build_message(topics.CASE_DIAGNOSIS, samples.diagnosis(ambulance_id="amb-1"),
                            sender="amb-1", case_id=samples.CASE_ID, ambulance_id="amb-1")
    assert message.topic == topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=samples.CASE_ID)
    assert (message.qos, message.retain, message.kind) == (1, False, topics.CASE_DIAGNOSIS.key)
    envelope = decode(message.data, expected=topics.CASE_DIAGNOSIS.payload)
    assert message.message_id == envelope.message_id and envelope.case_id == samples.CASE_ID
    with pytest.raises(TopicMismatch, match="carries"):
        build_message(topics.CASE_DIAGNOSIS, PositionV1(position=samples.diagnosis().position),
                      sender="amb-1", case_id=samples.CASE_ID, ambulance_id="amb-1")
    with pytest.raises(TopicMismatch, match="needs a case_id"):
        build_message(topics.CASE_DIAGNOSIS, samples.diagnosis(), sender="amb-1", ambulance_id="amb-1")


def test_a_refusal_is_set_aside_and_an_outage_stops_delivery() -> None:
    broker = InMemoryBroker()
    link = _Refusing(broker)
    batch = [OutgoingMessage(topic, b"x") for topic in ("t/a", "t/forbidden", "t/b", "t/c")]
    offline = deliver(link, batch)
    assert offline.acknowledged == [] and offline.refused == [] and offline.stalled is not None
    link.start()
    delivery = deliver(link, batch)
    assert [m.topic for m in delivery.acknowledged] == ["t/a", "t/b", "t/c"]
    assert [(m.topic, error) for m, error in delivery.refused] == [
        ("t/forbidden", "not authorized: t/forbidden")]
    assert delivery.stalled is None
    assert [topic for topic, _, _ in broker.published] == ["t/a", "t/b", "t/c"]


class _Flaky(InMemoryCommunicator):
    """Acknowledges the first message of a batch only, and then goes away."""

    def publish_many(self, messages: list[tuple[str, bytes, int, bool]], timeout: float | None = None) -> int:
        topic, payload, qos, retain = messages[0]
        super().publish(topic, payload, qos=qos, retain=retain)
        return 1

    def publish(self, *args: Any, **kwargs: Any) -> None:
        raise BrokerUnavailable("link lost")


def test_a_message_not_acknowledged_alone_is_an_outage() -> None:
    link = _Flaky(InMemoryBroker())
    link.start()
    delivery = deliver(link, [OutgoingMessage("t/a", b"1"), OutgoingMessage("t/b", b"2")])
    assert [m.topic for m in delivery.acknowledged] == ["t/a"]
    assert delivery.refused == [] and delivery.stalled == "link lost"


def test_the_hub_keeps_a_refused_message_as_a_dead_letter(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    broker = InMemoryBroker()
    link = _Refusing(broker)
    link.start()
    alert = next(p for p in samples.all_payloads() if isinstance(p, DispatchAlertV1))
    with session_scope(engine) as session:
        for case_id in ("case-a", "forbidden", "case-b"):
            enqueue(session, topics.DISPATCH_ALERT, alert, sender="hub-1", case_id=case_id)
    outbox = Outbox(engine, link)
    assert outbox.flush() == 3 and outbox.pending() == 0
    assert [topic for topic, _, _ in broker.published] == [
        topics.DISPATCH_ALERT.topic(case_id=c) for c in ("case-a", "case-b")]
    with Session(engine) as session:
        (dead,) = session.exec(select(DeadLetter)).all()
        forbidden = session.exec(select(OutboxMessage).where(OutboxMessage.topic == dead.topic)).one()
    assert dead.error.startswith("not authorized") and dead.message_id == forbidden.message_id
    engine.dispose()
