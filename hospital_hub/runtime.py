"""One hub worker: database, broker connections, handlers and housekeeping.

A worker has three broker connections: events (cases and decisions, a shared
subscription with a persistent session), state (retained statuses and
capacities, dispatch alerts; so a backlog of cases never delays an ER's last
will) and positions (:mod:`hospital_hub.position_lane`, by default in a child
process). With an injected communicator (tests) all three are that one.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from hospital_hub.db import make_engine, migrate, session_scope
from hospital_hub.dispatch_alerts import AlertFeed
from hospital_hub.er_presence import ErPresence
from hospital_hub.handlers import subscribe_handlers
from hospital_hub.images import ImageStore
from hospital_hub.intake import record_intake
from hospital_hub.live import LiveState
from hospital_hub.load import HeldCapacity, LoadMonitor
from hospital_hub.load_metrics import LoadCollector
from hospital_hub.metrics import HubMetrics, MeasuredMessenger
from hospital_hub.models import DeadLetter
from hospital_hub.outbox import Outbox
from hospital_hub.pacs import PacsPusher
from hospital_hub.position_lane import LaneProcess, LaneStats, LaneThread, PositionLane, lane_filter
from hospital_hub.presence_cases import PresenceAwareCaseService
from hospital_hub.registry import import_registry
from hospital_hub.settings import HubSettings
from shared import topics
from shared.background import BackgroundLoop
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
        self.state_communicator = communicator or PahoCommunicator(
            settings.mqtt.model_copy(update={"session_expiry_s": 0}),  # retained: sent anew
            client_id=f"goldenhour-hub-{settings.hub_id}-state")
        self.metrics = HubMetrics()
        """Prometheus metrics of this worker (served at /metrics)."""
        self.messenger: Messenger = MeasuredMessenger(self.communicator, settings.hub_id,
                                                      self.metrics)
        self.state_messenger: Messenger = (
            self.messenger if communicator is not None
            else MeasuredMessenger(self.state_communicator, settings.hub_id, self.metrics))
        # One count of rejected messages per worker (/health, /metrics), whichever
        # connection they came on.
        self.state_messenger.rejected = self.messenger.rejected
        self.state_messenger._lock = self.messenger._lock  # noqa: SLF001 - it guards that count
        self.presence = ErPresence()
        """Which ERs are online (their retained status), for ranking."""
        self.cases: PresenceAwareCaseService = PresenceAwareCaseService(
            self.engine, settings, self.metrics, presence=self.presence)
        self.load = LoadMonitor(settings.overload_lag_s, self._events_waiting)
        """Whether this worker is overloaded (readiness, metrics, what waits)."""
        self.held_capacity = HeldCapacity()
        self.alerts = AlertFeed()
        """Dispatch alerts heard on the broker, for the board."""
        self.live = LiveState(self.engine)
        self.position_lane: LaneProcess | LaneThread | PositionLane
        if communicator is not None:  # tests: the one connection carries positions too
            self.position_lane = PositionLane(self.live, LaneStats(), self._rejected_position)
        elif self._lane_mode() == "process":
            self.position_lane = LaneProcess(settings)
        else:
            self.position_lane = LaneThread(settings, self.live, self._rejected_position)
        self._metrics_server: Any = None
        self.images = ImageStore(self.engine, sender=settings.hub_id)
        self.outbox = Outbox(self.engine, self.communicator)
        self.pacs = PacsPusher(self.engine, calling_ae_title=settings.pacs_calling_ae_title,
                               retry_initial_s=settings.pacs_retry_initial_s,
                               retry_max_s=settings.pacs_retry_max_s,
                               timeout_s=settings.pacs_timeout_s, actor=settings.hub_id)
        """Pushes accepted cases to the accepting ER's PACS (its own thread)."""
        self._housekeeping = BackgroundLoop("hub-housekeeping", self.tick,
                                            settings.maintenance_interval_s,
                                            failure="housekeeping failed")
        # The outbox is published by a thread of its own, woken after each change:
        # a handler never waits for the broker's acks or for another worker's
        # flush, and changes made meanwhile go out together. With an injected
        # communicator (tests) a change is published before the handler returns.
        self._publisher = BackgroundLoop("hub-outbox", self._publish,
                                         settings.maintenance_interval_s,
                                         failure="outbox publish failed")
        # With an in-process communicator (tests, the demo) a change is published
        # at once; otherwise the publisher thread is woken.
        self._publishes_inline = communicator is not None
        self._after_change = self.outbox.flush if self._publishes_inline else self._publisher.wake
        self._last_prune = 0.0
        self.metrics.watch(self.engine, self.communicator, self.messenger, settings.hub_id)
        self.metrics.registry.register(LoadCollector(
            self.load, lambda: self.position_lane.stats, lambda: self.position_lane_up,
            self.held_capacity, self.presence))

    def _lane_mode(self) -> str:
        if self.settings.position_lane != "auto":
            return self.settings.position_lane
        return "process" if self.engine.dialect.name == "postgresql" else "thread"

    def _events_waiting(self) -> int:
        depths = getattr(self.communicator, "queue_depths", None)
        return depths()["events"] if depths is not None else 0

    def _rejected_position(self, error: str) -> None:
        self.messenger.rejected[error] += 1

    @property
    def position_lane_up(self) -> bool:
        """Whether the position lane runs and its subscription stands."""
        lane = self.position_lane
        alive = getattr(lane, "alive", True)
        return bool(alive) and 1.0 in (lane.stats.get("subscribed"), lane.stats.get("paused"))

    @property
    def overloaded(self) -> bool:
        """Whether this worker is overloaded now (see :mod:`hospital_hub.load`)."""
        return self.load.overloaded

    def start(self, wait: bool = True) -> None:
        """Migrate the schema, import the registry, connect and subscribe.

        With ``wait`` False the broker connection is made in the background and
        retried until it succeeds.
        """
        migrate(self.engine)
        import_registry(self.engine, self.settings.registry_csv)
        subscribe_handlers(self.messenger, self.cases, self.live, self.images,
                           self._after_change, self._dead_letter,
                           share_group=self.settings.share_group, refused=self._refused,
                           intake=functools.partial(record_intake, self.engine),
                           state=self.state_messenger, presence=self.presence, load=self.load,
                           held_capacity=self.held_capacity)
        self.state_messenger.on(topics.DISPATCH_ALERT, self.alerts.receive)
        if isinstance(self.position_lane, PositionLane):
            self.communicator.subscribe(lane_filter(self.settings), self.position_lane.receive,
                                        qos=0)
            self.position_lane.stats.set("subscribed", 1.0)
        else:
            self.position_lane.start()
        if self.state_communicator is not self.communicator:
            self.state_communicator.start(wait=wait)
        self.communicator.start(wait=wait)
        if wait and not isinstance(self.position_lane, PositionLane):
            # Like the other connections: started means subscribed (a process takes seconds).
            if not self.position_lane.wait_subscribed(self.settings.mqtt.connect_timeout_s + 20):
                logger.warning("position lane not subscribed yet; positions follow when it is")
        self._housekeeping.start()
        self._publisher.start()
        if self.settings.metrics_port is not None:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.http_host,
                registry=self.metrics.registry)
        self.pacs.start(self.settings.pacs_interval_s)
        logger.info("hub started", extra={"hub_id": self.settings.hub_id,
                                          "database": self.engine.url.render_as_string()})

    def tick(self) -> None:
        """Expire stale offers, pass on the offers of ERs offline past the grace,
        have what that enqueued published, apply held capacity refreshes when
        the load allows, and forget message ids and sent messages older than
        the retention."""
        overloaded = self.load.update()
        self.position_lane.stats.set("slow", 1.0 if overloaded else 0.0)
        if isinstance(self.position_lane, PositionLane):
            self.position_lane.flush()
        changed = self.cases.expire_offers() + self.cases.pass_offers_of(
            self.presence.offline_for(self.settings.er_offline_grace_s))
        # The publisher thread flushes every interval by itself (another worker's
        # leftovers included): a tick only hurries it after changes of its own.
        if changed or self._publishes_inline:
            self._after_change()
        for apply in self.held_capacity.due(everything=not overloaded):
            apply()
        now = time.monotonic()
        if now - self._last_prune > 60:
            self._last_prune = now
            self.outbox.prune(timedelta(seconds=self.settings.dedup_retention_s))
            from hospital_hub.performance import check_drift
            from hospital_hub.retention import purge_expired  # images and personal data

            purge_expired(self.engine, self.settings.retention_days)
            check_drift(self.engine, self.settings.hub_id)  # one dispatch alert per device window

    def _publish(self) -> None:
        self.outbox.flush()

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

    def stop(self) -> None:
        """Stop housekeeping and PACS pushes, disconnect and release the database."""
        self._housekeeping.stop()
        self._publisher.stop()
        self.pacs.stop()
        if not isinstance(self.position_lane, PositionLane):
            self.position_lane.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.communicator.stop()
        if self.state_communicator is not self.communicator:
            self.state_communicator.stop()
        self.engine.dispose()
        logger.info("hub stopped", extra={"hub_id": self.settings.hub_id})
