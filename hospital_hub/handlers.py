"""MQTT handlers: one small function per topic, each delegating to a service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from hospital_hub.cases import CaseService
from hospital_hub.er_presence import ErPresence
from hospital_hub.images import ImageStore
from hospital_hub.live import CapacityError, LiveState
from hospital_hub.load import HeldCapacity, LoadMonitor
from shared import topics
from shared.errors import GoldenhourError, NotFound
from shared.messages import Envelope, IntakeV1
from shared.mqtt import Messenger

logger = logging.getLogger(__name__)

Handler = Callable[[Envelope[Any], dict[str, str]], None]
DeadLetter = Callable[[str, Envelope[Any], str], None]
"""Keeps a message that could not be applied: (topic key, envelope, error)."""
Refused = Callable[[str, str], None]
"""Counts a message refused on purpose, not a fault: (topic key, reason)."""
IntakeRecorder = Callable[[str, IntakeV1, datetime], object]
"""Stores an edge's image intake counts: (ambulance id, counts, sent at)."""

RETRY_DELAYS_S = (0.1, 0.5, 2.0, 5.0)
"""Waits between attempts when the database fails transiently (about 8 s in all)."""
CASE_WAIT_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 1.5)
"""Waits for a case whose update or image chunk overtook its diagnosis (two
workers may handle them concurrently; about 3 s in all)."""


def subscribe_handlers(
    messenger: Messenger,
    cases: CaseService,
    live: LiveState,
    images: ImageStore,
    after_change: Callable[[], None],
    dead_letter: DeadLetter,
    share_group: str | None = None,
    refused: Refused | None = None,
    intake: IntakeRecorder | None = None,
    *,
    state: Messenger | None = None,
    presence: ErPresence | None = None,
    load: LoadMonitor | None = None,
    held_capacity: HeldCapacity | None = None,
) -> None:
    """Subscribe the hub's handlers; ``after_change`` runs after each applied
    case message (the runtime flushes the outbox there); ``refused`` counts
    messages refused on purpose (a decision on a case never offered to that
    ER, more free beds than the registry has): a warning, never a dead letter;
    ``intake`` stores the image intake counts an edge reports.

    Events go through the shared subscription (one worker handles each);
    retained state (statuses, capacity) goes to every worker, because a
    broker does not send retained messages to shared subscriptions. State
    comes through ``state`` (a connection of its own, so a backlog of cases
    never delays an ER's last will), by default ``messenger``. Positions are
    not here: they have a lane of their own (:mod:`hospital_hub.position_lane`).

    ``load`` times the case handlers; while it says overloaded, capacity
    refreshes wait in ``held_capacity`` (newest per ER). ``presence`` keeps
    the ERs' online status for ranking.
    """
    state = state or messenger
    track = load.track if load is not None else (lambda handler: handler)

    def diagnosis(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        if cases.receive_diagnosis(envelope):
            after_change()

    count = refused or (lambda kind, reason: None)

    def er_decision(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        payload = envelope.payload
        try:
            cases.decide(ids["case_id"], ids["hospital_id"], payload.decision,
                         decided_by=payload.decided_by, reason=payload.reason, envelope=envelope)
        except NotFound:
            # Any ER account can publish on its own decision topic: not an alarm.
            logger.warning("decision refused: case not offered to this ER",
                           extra={"kind": topics.ER_DECISION.key, **ids})
            count(topics.ER_DECISION.key, "not_offered")
            return
        after_change()

    def case_update(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        live.flush_positions()
        cases.update_case(ids["case_id"], envelope.payload, envelope=envelope)
        after_change()

    def image_chunk(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        if images.receive_chunk(ids["case_id"], envelope):
            after_change()

    def capacity(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        payload = envelope.payload

        def apply() -> None:
            try:
                live.set_capacity(ids["hospital_id"], er_beds_free=payload.er_beds_free,
                                  icu_beds_free=payload.icu_beds_free,
                                  accepting=payload.accepting, at=envelope.sent_at,
                                  source="mqtt")
            except CapacityError as exc:
                logger.warning("capacity refused", extra={"error": str(exc), **ids})
                count(topics.ER_CAPACITY.key, "exceeds_registry")

        if load is not None and held_capacity is not None and load.overloaded:
            held_capacity.hold(ids["hospital_id"], _guarded_call(topics.ER_CAPACITY.key, apply))
            return
        apply()

    def er_status(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        if presence is not None:
            presence.update(ids["hospital_id"], envelope.payload.state == "online",
                            envelope.sent_at)

    def ambulance_status(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        live.ambulance_status(ids["ambulance_id"], envelope.payload.state == "online",
                              envelope.sent_at)

    def ambulance_intake(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        if intake is not None:
            intake(ids["ambulance_id"], envelope.payload, envelope.sent_at)

    shared: list[tuple[topics.TopicSpec, Handler]] = [
        (topics.CASE_DIAGNOSIS, diagnosis), (topics.ER_DECISION, er_decision),
        (topics.CASE_UPDATE, case_update), (topics.CASE_IMAGE, image_chunk)]
    for spec, handler in shared:
        if spec in (topics.CASE_UPDATE, topics.CASE_IMAGE):
            handler = _waiting_for_case(handler)
        messenger.on(spec, track(_guarded(spec.key, handler, dead_letter)),
                     share_group=share_group)
    for spec, handler in ((topics.AMBULANCE_STATUS, ambulance_status),
                          (topics.AMBULANCE_INTAKE, ambulance_intake),
                          (topics.ER_CAPACITY, capacity), (topics.ER_STATUS, er_status)):
        state.on(spec, _guarded(spec.key, handler, dead_letter))


def _waiting_for_case(handler: Handler) -> Handler:
    """Retry briefly while the case is unknown: its diagnosis may still be in
    another worker's hands. After that, NotFound propagates."""

    def run(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        for delay in (*CASE_WAIT_DELAYS_S, None):
            try:
                handler(envelope, ids)
                return
            except NotFound:
                if delay is None:
                    raise
                time.sleep(delay)

    return run


def _guarded_call(kind: str, apply: Callable[[], None]) -> Callable[[], None]:
    """A held refresh, applied later: a failure is one log line (a newer report follows)."""

    def run() -> None:
        try:
            apply()
        except (GoldenhourError, DBAPIError) as exc:
            logger.warning("held message not applied", extra={"kind": kind, "error": str(exc)})

    return run


def _guarded(kind: str, handler: Handler, dead_letter: DeadLetter) -> Handler:
    """Apply a message, retrying transient database failures; a message that
    still cannot be applied goes to the dead-letter table with its reason,
    never silently away. Expected refusals are one clear log line."""

    def run(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
            try:
                handler(envelope, ids)
                return
            except IntegrityError:
                logger.info("concurrent duplicate dropped", extra={"kind": kind, **ids})
                return
            except NotFound as exc:
                error = f"unknown case or offer: {exc}"
                break
            except GoldenhourError as exc:
                logger.warning("message not applied",
                               extra={"kind": kind, "error": str(exc), **ids})
                return
            except OperationalError as exc:
                if delay is None:
                    error = f"database unavailable after {attempt} attempts: {exc}"
                    break
                logger.warning("database error; retrying",
                               extra={"kind": kind, "attempt": attempt, "error": str(exc)})
                time.sleep(delay)
            except DBAPIError as exc:
                error = f"database refused the message: {exc}"
                break
        logger.error("message dead-lettered", extra={"kind": kind, "error": error, **ids})
        dead_letter(kind, envelope, error)

    return run
