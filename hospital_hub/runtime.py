"""One hub worker: database, broker connection, handlers and housekeeping."""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from hospital_hub.cases import CaseService
from hospital_hub.db import make_engine, migrate, session_scope
from hospital_hub.handlers import subscribe_handlers
from hospital_hub.images import ImageStore
from hospital_hub.intake import record_intake
from hospital_hub.live import LiveState
from hospital_hub.metrics import HubMetrics, MeasuredCaseService, MeasuredMessenger
from hospital_hub.models import DeadLetter
from hospital_hub.outbox import Outbox
from hospital_hub.pacs import PacsPusher
from hospital_hub.registry import import_registry
from hospital_hub.settings import HubSettings
from shared import topics
from shared.errors import GoldenhourError
from shared.messages import Envelope, encode
from shared.mqtt import Communicator, Messenger, PahoCommunicator, status_will

logger = logging.getLogger(__name__)


class HubRuntime:
    """Wires a hub worker together; :meth:`start` and :meth:`stop` it."""

    def __init__(
        self,
        settings: HubSettings,
        communicator: Communicator | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.communicator = communicator or PahoCommunicator(
            settings.mqtt,
            client_id=f"goldenhour-hub-{settings.hub_id}",
            last_will=status_will(topics.HUB_STATUS, settings.hub_id, "hub",
                                  hub_id=settings.hub_id),
        )
        self.metrics = HubMetrics()
        """Prometheus metrics of this worker (served at /metrics)."""
        self.messenger: Messenger = MeasuredMessenger(self.communicator, settings.hub_id,
                                                      self.metrics)
        self.cases: CaseService = MeasuredCaseService(self.engine, settings, self.metrics)
        self.live = LiveState(self.engine)
        self.images = ImageStore(self.engine, sender=settings.hub_id)
        self.outbox = Outbox(self.engine, self.communicator)
        self.pacs = PacsPusher(self.engine, calling_ae_title=settings.pacs_calling_ae_title,
                               retry_initial_s=settings.pacs_retry_initial_s,
                               retry_max_s=settings.pacs_retry_max_s,
                               timeout_s=settings.pacs_timeout_s, actor=settings.hub_id)
        """Pushes accepted cases to the accepting ER's PACS (its own thread)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self.metrics.watch(self.engine, self.communicator, self.messenger, settings.hub_id)

    def start(self, wait: bool = True) -> None:
        """Migrate the schema, import the registry, connect and subscribe.

        With ``wait`` False the broker connection is made in the background and
        retried until it succeeds.
        """
        migrate(self.engine)
        import_registry(self.engine, self.settings.registry_csv)
        subscribe_handlers(self.messenger, self.cases, self.live, self.images,
                           self.outbox.flush, self._dead_letter,
                           share_group=self.settings.share_group, refused=self._refused,
                           intake=functools.partial(record_intake, self.engine))
        self.communicator.start(wait=wait)
        self._stop.clear()
        self._thread = threading.Thread(target=self._housekeeping, name="hub-housekeeping",
                                        daemon=True)
        self._thread.start()
        self.pacs.start(self.settings.pacs_interval_s)
        logger.info("hub started", extra={"hub_id": self.settings.hub_id,
                                          "database": self.engine.url.render_as_string()})

    def tick(self) -> None:
        """Expire stale offers, publish whatever the outbox holds, and forget
        message ids and sent messages older than the retention."""
        self.live.flush_positions()
        self.cases.expire_offers()
        self.outbox.flush()
        now = time.monotonic()
        if now - self._last_prune > 60:
            self._last_prune = now
            self.outbox.prune(timedelta(seconds=self.settings.dedup_retention_s))
            from hospital_hub.performance import check_drift
            from hospital_hub.retention import purge_expired  # images and personal data

            purge_expired(self.engine, self.settings.retention_days)
            check_drift(self.engine, self.settings.hub_id)  # one dispatch alert per device window

    def _refused(self, kind: str, reason: str) -> None:
        counter = (self.metrics.decisions_refused if kind == topics.ER_DECISION.key
                   else self.metrics.capacity_refused)
        counter.labels(reason=reason).inc()

    def _dead_letter(self, kind: str, envelope: Envelope[Any], error: str) -> None:
        self.metrics.dead_letters.labels(kind=kind).inc()
        try:
            with session_scope(self.engine) as session:
                session.add(DeadLetter(topic=kind, message_id=str(envelope.message_id),
                                       case_id=envelope.case_id, error=error[:2000],
                                       data=encode(envelope)))
        except Exception:  # the database may be what failed; the log line is all we have
            logger.exception("could not store dead letter",
                             extra={"kind": kind, "message_id": str(envelope.message_id)})

    def _housekeeping(self) -> None:
        while not self._stop.wait(self.settings.maintenance_interval_s):
            try:
                self.tick()
            except GoldenhourError as exc:
                logger.warning("housekeeping failed", extra={"error": str(exc)})
            except Exception:
                logger.exception("housekeeping failed")

    def stop(self) -> None:
        """Stop housekeeping and PACS pushes, disconnect and release the database."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.pacs.stop()
        self.communicator.stop()
        self.engine.dispose()
        logger.info("hub stopped", extra={"hub_id": self.settings.hub_id})
