"""The hub's transactional outbox: messages are rows first, published after.

A state change and the messages it causes commit together; :meth:`Outbox.flush`
publishes unsent rows in order and marks each sent on the broker's ack. A crash
between the two means the row is published later with the same message id,
which receivers drop as a duplicate, so nothing is lost and nothing is applied
twice.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.db import session_scope
from hospital_hub.models import OutboxMessage, utcnow
from shared.errors import MessagingError
from shared.messages import Envelope, Payload, encode
from shared.mqtt import Communicator
from shared.topics import TopicSpec

logger = logging.getLogger(__name__)


def enqueue(
    session: Session, spec: TopicSpec, payload: Payload, *, sender: str, case_id: str | None,
    **ids: str,
) -> Envelope[Any]:
    """Add a message to the outbox inside the caller's transaction."""
    if "case_id" in spec.placeholders and case_id is not None:
        ids = {**ids, "case_id": case_id}
    envelope = Envelope.wrap(payload, sender=sender, case_id=case_id)
    session.add(
        OutboxMessage(
            topic=spec.topic(**ids),
            qos=spec.qos,
            retain=spec.retain,
            data=encode(envelope),
            message_id=str(envelope.message_id),
            case_id=case_id,
        )
    )
    return envelope


class Outbox:
    """Publishes the outbox table through a communicator."""

    def __init__(self, engine: Engine, communicator: Communicator, batch: int = 200) -> None:
        self._engine = engine
        self._communicator = communicator
        self._batch = batch
        self._lock = threading.Lock()

    def flush(self) -> int:
        """Publish unsent messages oldest first; stop at the first failure.

        Returns the number published. Safe to call from several threads.
        """
        if not self._communicator.connected:
            return 0
        sent = 0
        with self._lock:
            with Session(self._engine) as session:
                rows = session.exec(
                    select(OutboxMessage)
                    .where(col(OutboxMessage.sent_at).is_(None))
                    .order_by(col(OutboxMessage.id))
                    .limit(self._batch)
                ).all()
            for row in rows:
                try:
                    self._communicator.publish(row.topic, row.data, qos=row.qos, retain=row.retain)
                except MessagingError as exc:
                    logger.warning(
                        "outbox publish failed; will retry",
                        extra={"topic": row.topic, "error": str(exc)},
                    )
                    with session_scope(self._engine) as session:
                        stored = session.get(OutboxMessage, row.id)
                        if stored:
                            stored.attempts += 1
                    break
                with session_scope(self._engine) as session:
                    stored = session.get(OutboxMessage, row.id)
                    if stored:
                        stored.sent_at = utcnow()
                        stored.attempts += 1
                sent += 1
                logger.debug("published", extra={"topic": row.topic, "message_id": row.message_id})
        return sent

    def pending(self) -> int:
        """How many messages wait to be published."""
        with Session(self._engine) as session:
            return len(
                session.exec(
                    select(OutboxMessage.id).where(col(OutboxMessage.sent_at).is_(None))
                ).all()
            )
