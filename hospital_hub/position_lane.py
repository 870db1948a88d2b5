"""Ambulance positions as state, not events: a lane of their own.

Only an ambulance's latest position matters (ranking and the live ETA read
it), so reports are not queued like cases. The lane keeps the newest report
per ambulance in memory (:class:`~hospital_hub.live.LiveState`) and writes
them all in one upsert per flush; a report older than the one held is
dropped. Decoding takes a fast path (plain msgpack and the contract's checks
for the usual report) and the full contract check for anything else.

The lane has its own broker connection (a QoS 0 subscription, shared between
workers) whose messages are handled in paho's network thread, with no queue
in between: when the lane falls behind, the backlog stays in the broker. In a
process of its own (the default with PostgreSQL), at a lower CPU priority, no
report waits in front of a case, and when the machine is short of CPU it is
the positions that wait. A lane more than ``position_max_lag_s`` behind sheds
the broker's queue of stale reports by reconnecting with a clean session: the
next reports are fresh ones. While its worker is overloaded, the lane lets its
subscription go (the reports go to other workers' lanes, or nowhere) and
writes what it holds a fifth as often.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, MutableSequence
from datetime import datetime
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hospital_hub.live import LiveState
from hospital_hub.settings import HubSettings
from shared import topics
from shared.errors import ContractError
from shared.ids import is_valid_id
from shared.messages import PositionV1
from shared.mqtt import Messenger
from shared.settings import MqttSettings

logger = logging.getLogger(__name__)

_ENVELOPE_KEYS = frozenset(("schema", "version", "message_id", "case_id", "sender", "sent_at",
                            "payload"))
_PREFIX, _SUFFIX = topics.AMBULANCE_POSITION.pattern.split("{ambulance_id}")
SLOW_FACTOR = 5
PAUSE_MIN_S = 2.0
"""The lane pauses or resumes its subscription at most this often (no flapping)."""
"""While the worker is overloaded, the lane writes this many times less often."""
_KNOWN_IDS: set[str] = set()
"""Ambulance ids already seen valid (a regular expression per report is not free)."""


def _fast(topic: str, data: bytes) -> tuple[str, float, float, datetime] | None:
    """The usual report, checked without pydantic; None for anything else."""
    if len(data) > PositionV1.MAX_BYTES or not topic.startswith(_PREFIX) \
            or not topic.endswith(_SUFFIX):
        return None
    ambulance = topic[len(_PREFIX):-len(_SUFFIX)]
    if ambulance not in _KNOWN_IDS:
        if not is_valid_id(ambulance):
            return None
        if len(_KNOWN_IDS) > 100_000:
            _KNOWN_IDS.clear()
        _KNOWN_IDS.add(ambulance)
    try:
        raw = msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=True)
    except Exception:  # msgpack raises several types; the full check names the fault
        return None
    if type(raw) is not dict or raw.keys() != _ENVELOPE_KEYS:
        return None
    message_id, at, payload = raw["message_id"], raw["sent_at"], raw["payload"]
    if (raw["schema"] != "position" or type(raw["version"]) is not int or raw["version"] != 1
            or raw["sender"] != ambulance or raw["case_id"] is not None
            or type(message_id) is not bytes or len(message_id) != 16
            or type(at) is not datetime or type(payload) is not dict
            or payload.keys() != {"position"}):
        return None
    position = payload["position"]
    if type(position) is not dict or position.keys() != {"lat", "lon"}:
        return None
    lat, lon = position["lat"], position["lon"]
    if type(lat) not in (float, int) or type(lon) not in (float, int):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails here too
        return None
    return ambulance, float(lat), float(lon), at


def read_position(topic: str, data: bytes) -> tuple[str, float, float, datetime]:
    """(ambulance id, lat, lon, sent at) of a position report.

    Raises:
        ContractError: the topic or bytes are not a valid position report
            (the same verdict as the contract's full check).
    """
    fast = _fast(topic, data)
    if fast is not None:
        return fast
    envelope, ids = Messenger.check(topics.AMBULANCE_POSITION, topic, data)
    position = envelope.payload.position
    return ids["ambulance_id"], position.lat, position.lon, envelope.sent_at


class LaneStats:
    """The lane's figures, in a buffer a parent process can read."""

    FIELDS = ("received", "superseded", "stored", "rejected", "shed", "lag_s", "pending",
              "flush_s", "slow", "subscribed", "paused")
    """``slow`` is set by the worker while it is overloaded (the lane pauses and
    writes less often); ``subscribed`` is 1 while the lane's subscription stands,
    ``paused`` while the lane has let it go to shed load."""

    def __init__(self, values: MutableSequence[float] | None = None) -> None:
        self.values: MutableSequence[float] = (
            values if values is not None else [0.0] * len(self.FIELDS))
        self._index = {name: n for n, name in enumerate(self.FIELDS)}

    @classmethod
    def shared(cls) -> LaneStats:
        """Stats in shared memory, for a lane in another process."""
        return cls(mp.get_context("spawn").Array("d", len(cls.FIELDS), lock=False))

    def add(self, name: str, amount: float = 1.0) -> None:
        self.values[self._index[name]] += amount

    def set(self, name: str, value: float) -> None:
        self.values[self._index[name]] = value

    def get(self, name: str) -> float:
        return float(self.values[self._index[name]])


class PositionLane:
    """Receives position reports and keeps the newest per ambulance."""

    def __init__(self, live: LiveState, stats: LaneStats,
                 rejected: Callable[[str], None] | None = None) -> None:
        self.live = live
        self.stats = stats
        self._rejected = rejected

    def receive(self, topic: str, data: bytes) -> None:
        """Handle one report (a raw handler: topic and bytes)."""
        try:
            ambulance, lat, lon, at = read_position(topic, data)
        except ContractError as exc:
            logger.warning("rejected message", extra={
                "topic": topic, "error": type(exc).__name__, "detail": str(exc),
                "bytes": len(data)})
            self.stats.add("rejected")
            if self._rejected is not None:
                self._rejected(type(exc).__name__)
            return
        if not self.live.note_position(ambulance, lat, lon, at):
            self.stats.add("superseded")
        self.stats.add("received")
        self.stats.set("lag_s", max(0.0, time.time() - at.timestamp()))

    def flush(self) -> int:
        """Store the newest reports; returns how many rows were written."""
        self.stats.set("pending", self.live.pending_positions())
        start = time.perf_counter()
        stored = self.live.flush_positions()
        self.stats.add("stored", stored)
        self.stats.set("flush_s", time.perf_counter() - start)
        return stored


def lane_filter(settings: HubSettings) -> str:
    """The lane's subscription: shared between workers when they share a group."""
    topic_filter = topics.AMBULANCE_POSITION.subscription()
    if settings.share_group:
        return topics.shared_subscription(settings.share_group, topic_filter)
    return topic_filter


def _client(settings: MqttSettings, client_id: str, topic_filter: str,
            handler: Callable[[str, bytes], None], stats: LaneStats) -> mqtt.Client:
    """A subscriber whose messages are handled in paho's network thread (no
    queue: a slow lane leaves its backlog in the broker), with a clean session.

    It speaks MQTT 3.1.1 whatever the hub's protocol: for QoS 0 reports it loses
    nothing, and paho decodes an MQTT 5 packet's properties in Python, which
    was 40 % of the lane's CPU (Mosquitto and EMQX share subscriptions with
    3.1.1 clients too)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=MQTTProtocolVersion.MQTTv311)
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca_file:
        client.tls_set(ca_certs=str(settings.tls_ca_file),
                       certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
                       keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=max(1, round(settings.reconnect_min_s)),
                               max_delay=max(1, round(settings.reconnect_max_s)))

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        if reason.is_failure:
            logger.error("position lane: broker refused the connection",
                         extra={"client_id": client_id, "reason": str(reason)})
            return
        if not stats.get("paused"):
            client.subscribe(topic_filter, qos=0)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                     properties: Any) -> None:
        refused = [code for code in reasons if getattr(code, "is_failure", False)]
        if refused:
            logger.error("position lane: broker refused the subscription",
                         extra={"topic_filter": topic_filter, "reason": str(refused[0])})
            return
        stats.set("subscribed", 1.0)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            handler(message.topic, message.payload)
        except Exception:  # nothing may stop the network thread
            logger.exception("position lane: report not handled")

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                      properties: Any) -> None:
        stats.set("subscribed", 0.0)
        if reason.value:  # not our own disconnect
            logger.warning("position lane: disconnected from the broker; reconnecting",
                           extra={"client_id": client_id, "reason": str(reason)})

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.connect_async(settings.host, settings.port, settings.keepalive_s)
    client.loop_start()
    return client


def _stop_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def run_lane(settings: HubSettings, lane: PositionLane, stop: Any, client_id: str,
             alive: Callable[[], bool] = lambda: True) -> None:
    """Receive, coalesce and store positions until ``stop`` is set (or ``alive`` fails)."""
    stats = lane.stats
    topic_filter = lane_filter(settings)
    client = _client(settings.mqtt, client_id, topic_filter, lane.receive, stats)
    interval = settings.position_flush_interval_s
    last_flush = last_turn = time.monotonic()
    try:
        while not stop.wait(interval) and alive():
            last_turn = _pause_or_resume(client, topic_filter, stats, last_turn)
            # While the worker is overloaded, write a fifth as often: coalescing keeps
            # the newest report of each ambulance, and the database serves the cases.
            if stats.get("slow") and time.monotonic() - last_flush < SLOW_FACTOR * interval:
                continue
            last_flush = time.monotonic()
            try:
                lane.flush()
            except Exception as exc:  # the database may be away; the newest reports stay held
                logger.warning("position lane: flush failed", extra={"error": str(exc)[:300]})
            lag = stats.get("lag_s")
            if lag > settings.position_max_lag_s and not math.isinf(lag):
                logger.warning("position lane behind; shedding the broker's queue of stale "
                               "reports", extra={"lag_s": round(lag, 1)})
                _stop_client(client)
                stats.add("shed")
                stats.set("lag_s", 0.0)
                client = _client(settings.mqtt, client_id, topic_filter, lane.receive, stats)
        try:
            lane.flush()
        except Exception as exc:
            logger.warning("position lane: last flush failed", extra={"error": str(exc)[:300]})
    finally:
        _stop_client(client)


def _pause_or_resume(client: mqtt.Client, topic_filter: str, stats: LaneStats,
                     last_turn: float) -> float:
    """While the worker is overloaded, let the subscription go: the broker drops
    the reports (QoS 0), or gives them to another worker's lane that is not
    overloaded, and the lane's CPU goes to the cases. Take it again when the
    load has fallen, at most every :data:`PAUSE_MIN_S`."""
    now = time.monotonic()
    slow, paused = stats.get("slow") == 1.0, stats.get("paused") == 1.0
    if slow == paused or now - last_turn < PAUSE_MIN_S:
        return last_turn
    stats.set("paused", 1.0 if slow else 0.0)
    if slow:
        client.unsubscribe(topic_filter)
        stats.set("subscribed", 0.0)
        logger.warning("position lane paused while the worker is overloaded")
    else:
        client.subscribe(topic_filter, qos=0)
        logger.info("position lane resumed")
    return now


def _process_main(settings: HubSettings, values: Any, stop: Any, parent: int) -> None:
    """The lane's own process: lower priority, its own database connection."""
    from hospital_hub.db import make_engine
    from shared.logs import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker stops the lane
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    configure_logging(settings.log_level, settings.log_format, service="hub-positions")
    try:
        os.nice(settings.position_lane_nice)
    except OSError:
        logger.warning("position lane: could not lower its priority")
    engine = make_engine(settings.database_url)
    try:
        run_lane(settings, PositionLane(LiveState(engine), LaneStats(values)), stop,
                 client_id=f"goldenhour-hub-{settings.hub_id}-positions",
                 alive=lambda: os.getppid() == parent)
    finally:
        engine.dispose()


def _wait_subscribed(stats: LaneStats, alive: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        if stats.get("subscribed") == 1.0:
            return True
        time.sleep(0.02)
    return stats.get("subscribed") == 1.0


class LaneProcess:
    """The lane in a child process of the hub worker."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.stats = LaneStats.shared()
        self._context = mp.get_context("spawn")
        self._stop = self._context.Event()
        self._process: Any = None

    def start(self) -> None:
        self._stop.clear()
        self._process = self._context.Process(
            target=_process_main, name=f"hub-positions-{self.settings.hub_id}", daemon=True,
            args=(self.settings, self.stats.values, self._stop, os.getpid()))
        self._process.start()
        logger.info("position lane started", extra={"pid": self._process.pid})

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until the lane's subscription stands (the process starts in seconds)."""
        return _wait_subscribed(self.stats, lambda: self.alive, timeout_s)

    def stop(self) -> None:
        if self._process is None:
            return
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._process = None


class LaneThread:
    """The lane on a thread of the worker's own process (SQLite, tests)."""

    def __init__(self, settings: HubSettings, live: LiveState,
                 rejected: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.live = live
        self.stats = LaneStats()
        self.lane = PositionLane(live, self.stats, rejected)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=run_lane, name="hub-positions", daemon=True,
            args=(self.settings, self.lane, self._stop,
                  f"goldenhour-hub-{self.settings.hub_id}-positions"))
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until the lane's subscription stands."""
        return _wait_subscribed(self.stats, lambda: self.alive, timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
