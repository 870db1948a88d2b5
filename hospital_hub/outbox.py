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

from sqlalchemy import delete, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select

from hospital_hub.db import session_scope
from hospital_hub.models import DeadLetter, OutboxMessage, ProcessedMessage, utcnow
from shared.messages import Envelope, Payload
from shared.mqtt import Communicator, build_message, deliver
from shared.topics import TopicSpec

logger = logging.getLogger(__name__)

FLUSH_LOCK_KEY = 0x60_1D_E0_4E
"""PostgreSQL advisory lock key taken by whichever hub worker is flushing."""


def enqueue(
    session: Session, spec: TopicSpec, payload: Payload, *, sender: str, case_id: str | None,
    **ids: str,
) -> Envelope[Any]:
    """Add a message to the outbox inside the caller's transaction.

    Raises:
        TopicMismatch: ``spec`` carries another payload, or an identifier is missing.
    """
    message = build_message(spec, payload, sender=sender, case_id=case_id, **ids)
    session.add(
        OutboxMessage(
            topic=message.topic,
            qos=message.qos,
            retain=message.retain,
            data=message.data,
            message_id=str(message.message_id),
            case_id=case_id,
        )
    )
    assert message.envelope is not None  # built above
    return message.envelope


class Outbox:
    """Publishes the outbox table through a communicator."""

    def __init__(self, engine: Engine, communicator: Communicator, batch: int = 200) -> None:
        self._engine = engine
        self._communicator = communicator
        self._batch = batch
        self._lock = threading.Lock()

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
                        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                        {"key": FLUSH_LOCK_KEY})
                    rows = session.exec(
                        select(OutboxMessage)
                        .where(col(OutboxMessage.sent_at).is_(None))
                        .order_by(col(OutboxMessage.id))
                        .limit(self._batch)
                    ).all()
                    published, failed = self._publish(rows)
                    sent += published
                if failed or len(rows) < self._batch:
                    return sent

    def _publish(self, rows: Sequence[OutboxMessage]) -> tuple[int, bool]:
        """Deliver ``rows``; returns how many left the queue and whether delivery stalled."""
        if not rows:
            return 0, False
        delivery = deliver(self._communicator, rows)
        now = utcnow()
        refused = [row for row, _ in delivery.refused]
        for row in delivery.acknowledged + refused:
            row.sent_at = now
            row.attempts += 1
        for row, error in delivery.refused:
            self._bury(row, error)
        if delivery.stalled is not None:
            # the message the broker did not take was tried once more
            next((row for row in rows if row.sent_at is None), rows[0]).attempts += 1
        return len(delivery.acknowledged) + len(refused), delivery.stalled is not None

    @staticmethod
    def _bury(row: OutboxMessage, error: str) -> None:
        session = object_session(row)
        if session is not None:
            session.add(DeadLetter(topic=row.topic, message_id=row.message_id,
                                   case_id=row.case_id, error=error[:2000], data=row.data))

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
