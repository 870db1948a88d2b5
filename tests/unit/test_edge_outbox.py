"""The edge's durable outbox and its sender, with an in-memory broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, OutboxFull, OutboxSender, Pending
from shared.errors import PublishRefused
from shared.mqtt import InMemoryBroker, InMemoryCommunicator, OutgoingMessage


def _messages(n: int, size: int = 10, case: str = "c1", kind: str = "update") -> list[OutgoingMessage]:
    return [OutgoingMessage(f"t/{case}/{i}", bytes([i % 256]) * size, 1, False, kind=kind)
            for i in range(n)]


def test_messages_survive_a_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, max_bytes=10_000)
    outbox.put(_messages(3, case="a"), "a")
    outbox.put(_messages(2, case="b"), "b")
    outbox.close()  # a kill -9 leaves the same file: every put was committed
    again = Outbox(path, max_bytes=10_000)
    rows = again.peek(10)
    assert [r.topic for r in rows] == ["t/a/0", "t/a/1", "t/a/2", "t/b/0", "t/b/1"]
    again.remove([rows[0].id, rows[1].id])
    assert again.pending() == (3, 30)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_disk_budget_refuses_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=100)
    outbox.put(_messages(9), "c1")
    with pytest.raises(OutboxFull, match="budget of 100"):
        outbox.put(_messages(2), "c2")
    assert any(r.getMessage() == "OUTBOX FULL: case not queued" for r in caplog.records)
    assert outbox.pending() == (9, 90)  # nothing half-written


def test_sender_forwards_when_connected_and_keeps_the_rest(tmp_path: Path) -> None:
    broker = InMemoryBroker()
    received: list[str] = []
    listener = InMemoryCommunicator(broker)
    listener.start()
    listener.subscribe("t/#", lambda topic, data: received.append(topic))
    link = InMemoryCommunicator(broker)
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000)
    sent: list[Pending] = []
    sender = OutboxSender(outbox, link, on_sent=sent.extend, batch=2)
    outbox.put(_messages(5), "c1")
    assert sender.flush() is False  # not connected: nothing leaves, nothing is lost
    assert outbox.pending()[0] == 5 and received == []
    link.start()
    assert sender.flush() is True
    assert received == [f"t/c1/{i}" for i in range(5)]
    assert [p.topic for p in sent] == received and outbox.pending() == (0, 0)


def test_case_records_survive_and_track_progress(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=1000)
    outbox.record_case("c1", "x.dcm", 2)
    outbox.mark_case("c1", sent=True)
    outbox.mark_case("c1", decision="accepted")
    (case,) = outbox.cases()
    assert case["case_id"] == "c1" and case["decision"] == "accepted"
    assert case["sent_at"] is not None


def test_confirmed_kinds_wait_for_the_hub_and_are_sent_again(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000)
    outbox.put([OutgoingMessage("t/d", b"diag", 1, False, kind="diagnosis"),
                OutgoingMessage("t/i0", b"chunk0", 1, False, kind="image", ref="sha-1"),
                OutgoingMessage("t/u", b"upd", 1, False, kind="update")], "c1")
    outbox.settle(outbox.peek(10))  # the broker acknowledged all three
    assert outbox.pending() == (0, 0) and outbox.unconfirmed() == 2
    assert outbox.requeue_unconfirmed(older_than_s=3600) == 0
    assert outbox.requeue_unconfirmed(older_than_s=-1) == 2  # the hub never confirmed
    assert [r.topic for r in outbox.peek(10)] == ["t/d", "t/i0"]
    outbox.settle(outbox.peek(10))
    assert outbox.confirm("c1") == 1  # any case status confirms the diagnosis
    assert outbox.confirm("c1", images=["sha-1"]) == 1
    assert outbox.unconfirmed() == 0


class _Refusing(InMemoryCommunicator):
    """A broker whose ACL forbids topics containing 'forbidden' (MQTT 5 PUBACK 0x87)."""

    def publish(self, topic, payload, *, qos=1, retain=False, timeout=None):  # type: ignore[no-untyped-def]
        if "forbidden" in topic:
            raise PublishRefused(f"not authorized: {topic}", reason_code=0x87)
        super().publish(topic, payload, qos=qos, retain=retain, timeout=timeout)

    def publish_many(self, messages, timeout=None):  # type: ignore[no-untyped-def]
        done = 0
        for topic, payload, qos, retain in messages:
            if "forbidden" in topic:
                break
            super().publish(topic, payload, qos=qos, retain=retain)
            done += 1
        return done


def test_a_refused_message_is_kept_aside_and_does_not_block_the_rest(tmp_path: Path) -> None:
    broker = InMemoryBroker()
    link = _Refusing(broker)
    link.start()
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000)
    outbox.put([OutgoingMessage("t/a", b"1", 1, False, kind="update"),
                OutgoingMessage("t/forbidden", b"2", 1, False, kind="update"),
                OutgoingMessage("t/b", b"3", 1, False, kind="update")], "c1")
    assert OutboxSender(outbox, link, on_sent=lambda rows: None).flush() is True
    assert [t for t, _, _ in broker.published] == ["t/a", "t/b"]
    dead = sqlite3.connect(outbox.path).execute("SELECT topic, error FROM dead").fetchall()
    assert dead == [("t/forbidden", "not authorized: t/forbidden")]
