"""Prometheus metrics of one hub worker, served at ``GET /metrics``.

Each :class:`HubMetrics` has its own :class:`CollectorRegistry` (never the
process-global one), so several hubs in one process (the tests) do not collide.

Two kinds of figures:

- counted by this worker as it works (counters and histograms): messages
  handled and how long each took, diagnoses stored or dropped as duplicates,
  offer outcomes, dead letters. With several workers, sum them across workers.
- read at scrape time (gauges, :class:`HubStateCollector`): the broker
  connection of this worker, whether the database answers, and from the shared
  database the open offers, the unsent outbox, the stored dead letters and
  the PACS pushes not yet acknowledged (the same figure on every worker: take
  ``max``, not ``sum``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.cases import CaseService, DecisionResult
from hospital_hub.models import DeadLetter, Offer, OfferState, OutboxMessage, PacsPush
from hospital_hub.pacs import PENDING
from hospital_hub.settings import HubSettings
from shared import __version__
from shared.messages import DiagnosisV1, Envelope
from shared.mqtt import Communicator, Messenger
from shared.mqtt.messenger import EnvelopeHandler
from shared.topics import TopicSpec

logger = logging.getLogger(__name__)

HANDLING_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""A handler may retry a failing database for about 8 s before dead-lettering."""
OFFER_OUTCOMES = ("accepted", "declined", "expired", "already_placed", "already_decided",
                  "duplicate")


class HubMetrics:
    """The hub's counters and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "goldenhour_hub_messages", "Valid contract messages handled, by topic key.",
            ["kind"], registry=self.registry)
        self.handling_seconds = Histogram(
            "goldenhour_hub_message_handling_seconds",
            "Time from a valid message reaching its handler to the handler's end "
            "(database work, retries and outbox flush included), by topic key.",
            ["kind"], buckets=HANDLING_BUCKETS_S, registry=self.registry)
        self.diagnoses = Counter(
            "goldenhour_hub_diagnoses",
            "Diagnosis messages: 'stored' (a new case or a further X-ray) or 'duplicate' "
            "(a message id seen before, dropped).", ["result"], registry=self.registry)
        self.offer_outcomes = Counter(
            "goldenhour_hub_offer_outcomes",
            "What became of offers: an ER's accept or decline, an expiry, or a decision "
            "on a closed offer (already_placed, already_decided) or a repeated one (duplicate).",
            ["outcome"], registry=self.registry)
        self.dead_letters = Counter(
            "goldenhour_hub_dead_letters",
            "Messages this worker could not apply and kept in the deadletter table, by topic key.",
            ["kind"], registry=self.registry)
        self.decisions_refused = Counter(
            "goldenhour_hub_decisions_refused",
            "ER decisions refused on purpose, by reason: 'not_offered' (the case was never "
            "offered to that ER). Not dead letters: any ER account can send them.",
            ["reason"], registry=self.registry)
        self.capacity_refused = Counter(
            "goldenhour_hub_capacity_refused",
            "ER capacity reports refused and not stored, by reason: 'exceeds_registry' "
            "(more free beds than the registry gives the ER).", ["reason"], registry=self.registry)
        self.decisions_refused.labels(reason="not_offered")
        self.capacity_refused.labels(reason="exceeds_registry")
        for result in ("stored", "duplicate"):
            self.diagnoses.labels(result=result)
        for outcome in OFFER_OUTCOMES:
            self.offer_outcomes.labels(outcome=outcome)

    def watch(self, engine: Engine, communicator: Communicator, messenger: Messenger,
              hub_id: str) -> None:
        """Add the scrape-time gauges of this worker's state."""
        self.registry.register(HubStateCollector(engine, communicator, messenger, hub_id))


class HubStateCollector(Collector):
    """Gauges read when Prometheus scrapes: broker, database, offers, outbox, PACS pushes."""

    def __init__(self, engine: Engine, communicator: Communicator, messenger: Messenger,
                 hub_id: str) -> None:
        self._engine = engine
        self._communicator = communicator
        self._messenger = messenger
        self._hub_id = hub_id

    def describe(self) -> list[Any]:
        """Nothing up front: :meth:`collect` talks to the database."""
        return []

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily("goldenhour_hub_info", "This worker's id and software version.",
                                 labels=["hub_id", "version"])
        info.add_metric([self._hub_id, __version__], 1)
        yield info
        yield GaugeMetricFamily("goldenhour_hub_broker_connected",
                                "1 while this worker's MQTT connection is up.",
                                value=1 if self._communicator.connected else 0)
        rejected = CounterMetricFamily(
            "goldenhour_hub_rejected_messages",
            "Messages refused by the contract check (bad envelope, schema, topic), by error.",
            labels=["error"])
        for error, count in sorted(dict(self._messenger.rejected).items()):
            rejected.add_metric([error], count)
        yield rejected
        figures = self._database_figures()
        yield GaugeMetricFamily("goldenhour_hub_database_up",
                                "1 when the database answered this scrape's queries.",
                                value=0 if figures is None else 1)
        if figures is None:
            return
        offers, outbox, dead, pacs_pending, pacs_failing = figures
        yield GaugeMetricFamily("goldenhour_hub_offers_pending",
                                "Open offers waiting for an ER's answer (whole hub).", value=offers)
        yield GaugeMetricFamily("goldenhour_hub_outbox_pending",
                                "Outbox messages not yet acknowledged by the broker (whole hub).",
                                value=outbox)
        yield GaugeMetricFamily("goldenhour_hub_dead_letters_stored",
                                "Rows in the deadletter table (whole hub).", value=dead)
        yield GaugeMetricFamily("goldenhour_hub_pacs_pending",
                                "DICOM instances of accepted cases not yet acknowledged by the "
                                "ER's PACS (whole hub).", value=pacs_pending)
        yield GaugeMetricFamily("goldenhour_hub_pacs_failing",
                                "Of those, instances whose last send failed and wait for a retry "
                                "(whole hub).", value=pacs_failing)

    def _database_figures(self) -> tuple[int, int, int, int, int] | None:
        try:
            with Session(self._engine) as session:
                offers = session.exec(select(func.count()).select_from(Offer)
                                      .where(Offer.state == OfferState.OPEN)).one()
                outbox = session.exec(select(func.count()).select_from(OutboxMessage)
                                      .where(col(OutboxMessage.sent_at).is_(None))).one()
                dead = session.exec(select(func.count()).select_from(DeadLetter)).one()
                pending = PacsPush.status == PENDING
                pacs_pending = session.exec(select(func.count()).select_from(PacsPush)
                                            .where(pending)).one()
                pacs_failing = session.exec(select(func.count()).select_from(PacsPush)
                                            .where(pending, col(PacsPush.attempts) > 0)).one()
        except Exception as exc:  # a scrape must answer even when the database does not
            logger.warning("metrics: database unavailable", extra={"error": str(exc)[:300]})
            return None
        return int(offers), int(outbox), int(dead), int(pacs_pending), int(pacs_failing)


class MeasuredMessenger(Messenger):
    """A :class:`Messenger` whose handlers are counted and timed."""

    def __init__(self, communicator: Communicator, sender: str, metrics: HubMetrics) -> None:
        super().__init__(communicator, sender)
        self.metrics = metrics

    def on(self, spec: TopicSpec, handler: EnvelopeHandler, *, share_group: str | None = None,
           **ids: str) -> None:
        """Subscribe ``handler``, timing each call under the topic's key."""
        handled = self.metrics.messages.labels(kind=spec.key)
        duration = self.metrics.handling_seconds.labels(kind=spec.key)

        def measured(envelope: Envelope[Any], values: dict[str, str]) -> None:
            start = time.perf_counter()
            try:
                handler(envelope, values)
            finally:
                duration.observe(time.perf_counter() - start)
                handled.inc()

        super().on(spec, measured, share_group=share_group, **ids)


class MeasuredCaseService(CaseService):
    """A :class:`CaseService` that counts diagnoses and offer outcomes."""

    def __init__(self, engine: Engine, settings: HubSettings, metrics: HubMetrics,
                 **options: Any) -> None:
        super().__init__(engine, settings, **options)
        self.metrics = metrics

    def receive_diagnosis(self, envelope: Envelope[DiagnosisV1]) -> bool:
        stored = super().receive_diagnosis(envelope)
        self.metrics.diagnoses.labels(result="stored" if stored else "duplicate").inc()
        return stored

    def decide(self, *args: Any, **kwargs: Any) -> DecisionResult:
        result = super().decide(*args, **kwargs)
        self.metrics.offer_outcomes.labels(outcome=result.outcome).inc()
        return result

    def expire_offers(self, *args: Any, **kwargs: Any) -> int:
        expired = super().expire_offers(*args, **kwargs)
        if expired:
            self.metrics.offer_outcomes.labels(outcome="expired").inc(expired)
        return expired
