"""MQTT handlers: one small function per topic, each delegating to the service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from hospital_hub.cases import CaseService
from shared import topics
from shared.errors import GoldenhourError
from shared.messages import Envelope
from shared.mqtt import Messenger

logger = logging.getLogger(__name__)


def subscribe_handlers(
    messenger: Messenger,
    service: CaseService,
    after_change: Callable[[], None],
    share_group: str | None = None,
) -> None:
    """Subscribe the hub's handlers; ``after_change`` runs after each applied
    message (the runtime flushes the outbox there)."""

    def diagnosis(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        with _guard("diagnosis", ids):
            if service.receive_diagnosis(envelope):
                after_change()

    def er_decision(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        payload = envelope.payload
        with _guard("er_decision", ids):
            service.decide(
                ids["case_id"], ids["hospital_id"], payload.decision,
                decided_by=payload.decided_by, reason=payload.reason, envelope=envelope,
            )
            after_change()

    def ambulance_status(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        with _guard("ambulance_status", ids):
            service.ambulance_status(ids["ambulance_id"], envelope)

    def ambulance_position(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        with _guard("ambulance_position", ids):
            service.ambulance_position(ids["ambulance_id"], envelope)

    messenger.on(topics.CASE_DIAGNOSIS, diagnosis, share_group=share_group)
    messenger.on(topics.ER_DECISION, er_decision, share_group=share_group)
    messenger.on(topics.AMBULANCE_POSITION, ambulance_position, share_group=share_group)
    # Retained status must reach every worker, so no shared subscription here.
    messenger.on(topics.AMBULANCE_STATUS, ambulance_status)


class _guard:
    """Turn expected failures into one clear log line; let bugs reach the
    communicator, which logs them with a traceback and carries on."""

    def __init__(self, kind: str, ids: dict[str, str]) -> None:
        self.kind, self.ids = kind, ids

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        if exc is None:
            return False
        if isinstance(exc, IntegrityError):
            logger.info("concurrent duplicate dropped", extra={"kind": self.kind, **self.ids})
            return True
        if isinstance(exc, GoldenhourError):
            logger.warning("message not applied", extra={"kind": self.kind, "error": str(exc),
                                                         **self.ids})
            return True
        return False
