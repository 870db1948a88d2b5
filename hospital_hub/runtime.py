"""One hub worker: database, broker connection, handlers and housekeeping."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from hospital_hub.cases import CaseService
from hospital_hub.db import make_engine, migrate
from hospital_hub.handlers import subscribe_handlers
from hospital_hub.outbox import Outbox
from hospital_hub.registry import import_registry
from hospital_hub.settings import HubSettings
from shared import topics
from shared.errors import GoldenhourError
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
        self.messenger = Messenger(self.communicator, sender=settings.hub_id)
        self.cases = CaseService(self.engine, settings)
        self.outbox = Outbox(self.engine, self.communicator)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wait: bool = True) -> None:
        """Migrate the schema, import the registry, connect and subscribe.

        With ``wait`` False the broker connection is made in the background and
        retried until it succeeds.
        """
        migrate(self.engine)
        import_registry(self.engine, self.settings.registry_csv)
        subscribe_handlers(self.messenger, self.cases, self.outbox.flush,
                           share_group=self.settings.share_group)
        self.communicator.start(wait=wait)
        self._stop.clear()
        self._thread = threading.Thread(target=self._housekeeping, name="hub-housekeeping",
                                        daemon=True)
        self._thread.start()
        logger.info("hub started", extra={"hub_id": self.settings.hub_id,
                                          "database": self.engine.url.render_as_string()})

    def tick(self) -> None:
        """Expire stale offers and publish whatever the outbox holds."""
        self.cases.expire_offers()
        self.outbox.flush()

    def _housekeeping(self) -> None:
        while not self._stop.wait(self.settings.maintenance_interval_s):
            try:
                self.tick()
            except GoldenhourError as exc:
                logger.warning("housekeeping failed", extra={"error": str(exc)})
            except Exception:
                logger.exception("housekeeping failed")

    def stop(self) -> None:
        """Stop housekeeping, disconnect and release the database."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.communicator.stop()
        self.engine.dispose()
        logger.info("hub stopped", extra={"hub_id": self.settings.hub_id})
