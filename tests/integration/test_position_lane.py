"""The position lane on a real Mosquitto: it takes the reports on a connection
of its own, lets its subscription go while its worker is overloaded and takes
it again after, and drops a stale broker queue when it falls behind."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest

from hospital_hub.db import make_engine, migrate
from hospital_hub.live import LiveState
from hospital_hub.position_lane import PAUSE_MIN_S, LaneThread
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.services import wait_until


def _report(ambulance_id: str, age_s: float = 0.0) -> bytes:
    return msgpack.packb({
        "schema": "position", "version": 1, "message_id": uuid.uuid4().bytes, "case_id": None,
        "sender": ambulance_id, "sent_at": datetime.now(UTC) - timedelta(seconds=age_s),
        "payload": {"position": {"lat": 42.35, "lon": -71.06}}}, datetime=True, use_bin_type=True)


@pytest.fixture
def lane(mqtt_settings: MqttSettings, tmp_path: Path, uid: str) -> Iterator[LaneThread]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    settings = load_hub_settings(hub_id=f"lane-{uid}", mqtt=mqtt_settings,
                                 share_group=f"lane{uid}", position_flush_interval_s=0.2,
                                 position_max_lag_s=5.0)
    lane = LaneThread(settings, LiveState(engine))
    lane.start()
    assert lane.wait_subscribed(10)
    yield lane
    lane.stop()


@pytest.fixture
def publish(mqtt_settings: MqttSettings, uid: str) -> Iterator[Callable[..., None]]:
    client = PahoCommunicator(mqtt_settings.model_copy(update={"session_expiry_s": 0}),
                              client_id=f"positions-{uid}")
    client.start()

    def send(count: int, age_s: float = 0.0) -> None:
        for n in range(count):
            ambulance = f"amb-{uid}-{n % 7}"
            client.publish(topics.AMBULANCE_POSITION.topic(ambulance_id=ambulance),
                           _report(ambulance, age_s), qos=0)

    yield send
    client.stop()


def test_the_lane_pauses_while_its_worker_is_overloaded(lane: LaneThread,
                                                        publish: Callable[..., None]) -> None:
    stats = lane.stats
    publish(50)
    assert wait_until(lambda: stats.get("received") == 50, timeout=5)
    assert wait_until(lambda: stats.get("stored") >= 7, timeout=5)  # the newest of 7 ambulances
    time.sleep(PAUSE_MIN_S)
    stats.set("slow", 1.0)  # what the worker's housekeeping sets while overloaded
    assert wait_until(lambda: stats.get("paused") == 1.0, timeout=PAUSE_MIN_S + 3)
    time.sleep(0.5)  # the unsubscribe reaches the broker
    publish(50)
    time.sleep(1.0)
    assert stats.get("received") == 50  # shed: not one more report taken
    stats.set("slow", 0.0)
    assert wait_until(lambda: stats.get("subscribed") == 1.0, timeout=PAUSE_MIN_S + 3)
    publish(50)
    assert wait_until(lambda: stats.get("received") == 100, timeout=5)


def test_a_lane_far_behind_drops_the_stale_queue(lane: LaneThread,
                                                 publish: Callable[..., None]) -> None:
    publish(5, age_s=60.0)  # reports a minute old: the lane is (as if) a minute behind
    assert wait_until(lambda: lane.stats.get("shed") >= 1, timeout=5)
    assert wait_until(lambda: lane.stats.get("subscribed") == 1.0, timeout=10)
    received = lane.stats.get("received")
    publish(5)
    assert wait_until(lambda: lane.stats.get("received") == received + 5, timeout=5)
