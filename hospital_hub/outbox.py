"""The hub's transactional outbox: messages are rows first, published after.

A state change and the messages it causes commit together; :meth:`Outbox.flush`
publishes unsent rows in order and marks each sent on the broker's ack. A crash
between the two means the row is published later with the same message id,
which receivers drop as a duplicate, so nothing is lost and nothing is applied
twice. The send logic is the edge's too (:func:`shared.mqtt.delivery.deliver`);
a message the broker refuses for good becomes a dead letter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.appended_rows import append
from hospital_hub.db import session_scope
from hospital_hub.models import DeadLetter, OutboxMessage, ProcessedMessage, utcnow
from shared.messages import Envelope, Payload
from shared.mqtt import Communicator, build_message, deliver
from shared.topics import TopicSpec

logger = logging.getLogger(__name__)

FLUSH_LOCK_KEY = 0x60_1D_E0_4E
"""PostgreSQL advisory lock key taken by whichever hub worker is flushing."""

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
DEAD_LETTERS = DeadLetter.__table__  # type: ignore[attr-defined]
_UNSENT = select(OUTBOX.c.id, OUTBOX.c.topic, OUTBOX.c.qos, OUTBOX.c.retain, OUTBOX.c.data,
                 OUTBOX.c.message_id, OUTBOX.c.case_id).where(OUTBOX.c.sent_at.is_(None)) \
    .order_by(OUTBOX.c.id)
"""The unsent messages, oldest first: plain rows (the flusher only reads and marks them)."""
_FLUSH_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_MARK_SENT = (update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
              .values(sent_at=bindparam("now"), attempts=OUTBOX.c.attempts + 1))
_TRIED_AGAIN = (update(OUTBOX).where(OUTBOX.c.id == bindparam("stuck"))
                .values(attempts=OUTBOX.c.attempts + 1))


def enqueue(
    session: Session, spec: TopicSpec, payload: Payload, *, sender: str, case_id: str | None,
    **ids: str,
) -> Envelope[Any]:
    """Add a message to the outbox inside the caller's transaction (written at
    its commit, :mod:`hospital_hub.appended_rows`).

    Raises:
        TopicMismatch: ``spec`` carries another payload, or an identifier is missing.
    """
    message = build_message(spec, payload, sender=sender, case_id=case_id, **ids)
    append(session, OUTBOX, {
        "topic": message.topic, "qos": message.qos, "retain": message.retain,
        "data": message.data, "message_id": str(message.message_id), "case_id": case_id,
        "created_at": utcnow(), "sent_at": None, "attempts": 0})
    assert message.envelope is not None  # built above
    return message.envelope


class Outbox:
    """Publishes the outbox table through a communicator."""

    def __init__(self, engine: Engine, communicator: Communicator, batch: int = 200) -> None:
        self._engine = engine
        self._communicator = communicator
        self._batch = batch
        self._lock = threading.Lock()
        self._unsent = _UNSENT.limit(batch)

    def flush(self) -> int:
        """Publish unsent messages oldest first; stop at the first failure.

        One flusher at a time across all hub workers (a PostgreSQL advisory
        lock; SQLite's write lock does the same), so messages leave in the
        order they were written and none is published twice by two workers.
        Returns the number published.
        """
        if not self._communicator.connected:
            return 0
        sent = 0
        with self._lock:
            while True:
                with session_scope(self._engine) as session:
                    if session.get_bind().dialect.name == "postgresql":
                        session.execute(_FLUSH_LOCK, {"key": FLUSH_LOCK_KEY})
                    rows = session.execute(self._unsent).all()
                    published, failed = self._publish(session, rows)
                    sent += published
                if failed or len(rows) < self._batch:
                    return sent

    def _publish(self, session: Session, rows: Sequence[Row[Any]]) -> tuple[int, bool]:
        """Deliver ``rows``; returns how many left the queue and whether delivery stalled."""
        if not rows:
            return 0, False
        delivery = deliver(self._communicator, rows)
        done = [row.id for row in delivery.acknowledged] + [row.id for row, _ in delivery.refused]
        if done:
            session.execute(_MARK_SENT, {"ids": done, "now": utcnow()})
        if delivery.refused:
            session.execute(insert(DEAD_LETTERS), [
                {"received_at": utcnow(), "topic": row.topic, "message_id": row.message_id,
                 "case_id": row.case_id, "error": error[:2000], "data": row.data}
                for row, error in delivery.refused])
        if delivery.stalled is not None:
            # the message the broker did not take was tried once more
            finished = set(done)
            stuck = next((row.id for row in rows if row.id not in finished), rows[0].id)
            session.execute(_TRIED_AGAIN, {"stuck": stuck})
        return len(done), delivery.stalled is not None

    def pending(self) -> int:
        """How many messages wait to be published."""
        with Session(self._engine) as session:
            return int(session.exec(select(func.count()).select_from(OutboxMessage)
                                    .where(col(OutboxMessage.sent_at).is_(None))).one())

    def prune(self, older_than: timedelta) -> None:
        """Delete sent messages and remembered message ids older than ``older_than``."""
        cutoff = utcnow() - older_than
        with session_scope(self._engine) as session:
            session.execute(delete(OutboxMessage).where(col(OutboxMessage.sent_at) < cutoff))
            session.execute(delete(ProcessedMessage)
                            .where(col(ProcessedMessage.received_at) < cutoff))
