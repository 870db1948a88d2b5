"""Prometheus metrics of one edge agent, served at ``GET /metrics`` on the crew page.

The pipeline already times each stage (decode, ood, preprocess, classify,
postprocess, heatmap, localise, triage) into the diagnosis' ``timings_ms``;
:meth:`EdgeMetrics.observe_diagnosis` feeds those same figures to the
histograms, so nothing is timed twice, whichever model ran the diagnosis.
Outbox depth, the broker connection and the model in use (which a signed
model update may change) are read when Prometheus scrapes. Each agent has its
own registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import __version__
from shared.messages import DiagnosisV1

logger = logging.getLogger(__name__)

STAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DIAGNOSIS_BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("queued", "unusable_image", "outbox_full", "failed")


class EdgeMetrics:
    """The edge agent's counters and histograms, in a registry of their own.

    ``outbox_depth`` returns (messages, bytes) waiting to be sent,
    ``unconfirmed`` the messages sent but not yet confirmed by the hub,
    ``connected`` the broker connection's state and ``model`` the classifier's
    (name, version) that the next diagnosis runs on; they are called at scrape time.
    """

    def __init__(self, ambulance_id: str, *, outbox_depth: Callable[[], tuple[int, int]],
                 unconfirmed: Callable[[], int], connected: Callable[[], bool],
                 model: Callable[[], tuple[str, str]]) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "goldenhour_edge_stage_seconds", "Duration of each diagnosis pipeline stage.",
            ["stage"], buckets=STAGE_BUCKETS_S, registry=self.registry)
        self.diagnosis_seconds = Histogram(
            "goldenhour_edge_diagnosis_seconds",
            "Whole diagnosis of one X-ray (the sum of its stages).",
            buckets=DIAGNOSIS_BUCKETS_S, registry=self.registry)
        self.diagnoses = Counter(
            "goldenhour_edge_diagnoses",
            "X-rays submitted, by outcome: queued (the case is on disk for sending), "
            "unusable_image, outbox_full, failed (any other error).",
            ["outcome"], registry=self.registry)
        self.triage = Counter(
            "goldenhour_edge_triage", "Queued cases by triage level (1 most urgent).",
            ["level"], registry=self.registry)
        self.decisions = Counter(
            "goldenhour_edge_decisions", "Decisions received from the hub, by status.",
            ["status"], registry=self.registry)
        self.decisions_ignored = Counter(
            "goldenhour_edge_decisions_ignored",
            "Decisions ignored: not_offered (names an ER the case was not offered to), "
            "after_acceptance (a no_er_available after an ER accepted).",
            ["reason"], registry=self.registry)
        for outcome in OUTCOMES:
            self.diagnoses.labels(outcome=outcome)
        self.registry.register(_EdgeStateCollector(ambulance_id, outbox_depth, unconfirmed,
                                                   connected, model))

    def observe_diagnosis(self, diagnosis: DiagnosisV1) -> None:
        """Record a finished diagnosis' stage timings (as the pipeline measured them)."""
        for stage, ms in diagnosis.timings_ms.items():
            self.stage_seconds.labels(stage=stage).observe(ms / 1000)
        self.diagnosis_seconds.observe(sum(diagnosis.timings_ms.values()) / 1000)

    def count_submission(self, outcome: str, triage_level: int | None = None) -> None:
        """Count one submitted X-ray by outcome (and a queued case by triage level)."""
        self.diagnoses.labels(outcome=outcome).inc()
        if triage_level is not None:
            self.triage.labels(level=str(triage_level)).inc()


class _EdgeStateCollector(Collector):
    """Gauges read when Prometheus scrapes: outbox depth, broker connection, model."""

    def __init__(self, ambulance_id: str, outbox_depth: Callable[[], tuple[int, int]],
                 unconfirmed: Callable[[], int], connected: Callable[[], bool],
                 model: Callable[[], tuple[str, str]]) -> None:
        self._ambulance_id = ambulance_id
        self._outbox_depth = outbox_depth
        self._unconfirmed = unconfirmed
        self._connected = connected
        self._model = model

    def describe(self) -> list[Any]:
        """Nothing up front: :meth:`collect` reads the outbox."""
        return []

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily("goldenhour_edge_info", "This ambulance and the software version.",
                                 labels=["ambulance_id", "version"])
        info.add_metric([self._ambulance_id, __version__], 1)
        yield info
        model = GaugeMetricFamily("goldenhour_edge_model_info",
                                  "The classifier the next diagnosis runs on (a model update "
                                  "changes it).", labels=["model", "version"])
        model.add_metric(list(self._model()), 1)
        yield model
        yield GaugeMetricFamily("goldenhour_edge_broker_connected",
                                "1 while the MQTT connection is up.",
                                value=1 if self._connected() else 0)
        try:
            messages, size = self._outbox_depth()
            unconfirmed = self._unconfirmed()
        except Exception as exc:  # a scrape must answer even when the outbox does not
            logger.warning("metrics: outbox unreadable", extra={"error": str(exc)[:300]})
            return
        yield GaugeMetricFamily("goldenhour_edge_outbox_messages",
                                "Messages in the durable outbox waiting to be sent.", value=messages)
        yield GaugeMetricFamily("goldenhour_edge_outbox_bytes",
                                "Bytes in the durable outbox waiting to be sent.", value=size)
        yield GaugeMetricFamily("goldenhour_edge_outbox_unconfirmed",
                                "Messages sent but not yet confirmed by the hub.", value=unconfirmed)
