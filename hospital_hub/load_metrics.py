"""Scrape-time gauges of one worker's load: overload, lag, queue depth, the
position lane and the ERs' online status (see :mod:`hospital_hub.load`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hospital_hub.er_presence import ErPresence
from hospital_hub.load import HeldCapacity, LoadMonitor
from hospital_hub.position_lane import LaneStats

POSITION_RESULTS = ("received", "superseded", "stored", "rejected", "shed")


class LoadCollector(Collector):
    """Gauges and counters read from the worker's memory (no database)."""

    def __init__(self, load: LoadMonitor, lane: Callable[[], LaneStats | None],
                 lane_up: Callable[[], bool], held: HeldCapacity, presence: ErPresence) -> None:
        self._load = load
        self._lane = lane
        self._lane_up = lane_up
        self._held = held
        self._presence = presence

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        figures = self._load.figures()
        yield GaugeMetricFamily("goldenhour_hub_overloaded",
                                "1 while this worker is overloaded (it defers capacity "
                                "refreshes and position writes; cases are never deferred).",
                                value=1 if self._load.overloaded else 0)
        yield CounterMetricFamily("goldenhour_hub_overload_episodes",
                                  "Times this worker became overloaded.",
                                  value=self._load.episodes)
        yield GaugeMetricFamily("goldenhour_hub_event_lag_seconds",
                                "Median age of case messages when their handling began, "
                                "over the last 2 s (includes senders' clock errors).",
                                value=figures["lag_s"])
        yield GaugeMetricFamily("goldenhour_hub_event_busy_ratio",
                                "Share of the last 2 s the case handler thread was busy.",
                                value=figures["busy"])
        yield GaugeMetricFamily("goldenhour_hub_event_queue_depth",
                                "Case messages received and waiting for the handler thread "
                                "(the rest of a backlog waits in the broker).",
                                value=figures["queue_depth"])
        yield GaugeMetricFamily("goldenhour_hub_capacity_held",
                                "Capacity refreshes held while overloaded (newest per ER).",
                                value=len(self._held))
        yield GaugeMetricFamily("goldenhour_hub_ers_offline",
                                "ERs whose console or gateway status is offline.",
                                value=len(self._presence.offline()))
        yield GaugeMetricFamily("goldenhour_hub_position_lane_up",
                                "1 while this worker's position lane runs and its "
                                "subscription stands.", value=1 if self._lane_up() else 0)
        stats = self._lane()
        if stats is None:
            return
        counter = CounterMetricFamily(
            "goldenhour_hub_positions",
            "Position reports: received (valid), superseded (a newer one came before it was "
            "stored, or it was older), stored (rows written), rejected (invalid), shed "
            "(times the lane dropped the broker's queue of stale reports).",
            labels=["result"])
        for result in POSITION_RESULTS:
            counter.add_metric([result], stats.get(result))
        yield counter
        yield GaugeMetricFamily("goldenhour_hub_position_lag_seconds",
                                "Age of the latest position report when the lane took it.",
                                value=stats.get("lag_s"))
        yield GaugeMetricFamily("goldenhour_hub_position_lane_paused",
                                "1 while the lane has let its subscription go to shed load.",
                                value=stats.get("paused"))
        yield GaugeMetricFamily("goldenhour_hub_positions_pending",
                                "Ambulances whose newest report waited for the last write.",
                                value=stats.get("pending"))
