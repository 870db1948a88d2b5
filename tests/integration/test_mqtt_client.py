"""The MQTT client layer against a real Mosquitto."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared import topics
from shared.broker import MosquittoBroker, free_port
from shared.errors import BrokerUnavailable
from shared.messages import CapacityV1, decode
from shared.mqtt import Messenger, PahoCommunicator, status_will
from shared.settings import MqttSettings
from tests.services import wait_until


def _client(settings: MqttSettings, name: str, **kwargs) -> PahoCommunicator:  # type: ignore[no-untyped-def]
    client = PahoCommunicator(settings, client_id=name, **kwargs)
    client.start()
    return client


def test_publish_waits_for_ack_and_handler_errors_do_not_stop_delivery(
        mqtt_settings: MqttSettings, uid: str) -> None:
    received: list[bytes] = []
    calls = 0

    def flaky(topic: str, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a handler")
        received.append(data)

    sub = _client(mqtt_settings, f"sub-{uid}")
    pub = _client(mqtt_settings, f"pub-{uid}")
    try:
        sub.subscribe(f"test/{uid}/#", flaky)
        for n in range(3):
            pub.publish(f"test/{uid}/x", str(n).encode())
        assert wait_until(lambda: len(received) == 2)
        assert received == [b"1", b"2"]
    finally:
        pub.stop()
        sub.stop()


def test_handlers_may_publish_and_wait(mqtt_settings: MqttSettings, uid: str) -> None:
    """Handlers run off the network thread, so publishing from one cannot deadlock."""
    replies: list[bytes] = []
    client = _client(mqtt_settings, f"echo-{uid}")
    try:
        client.subscribe(f"test/{uid}/ping", lambda t, d: client.publish(f"test/{uid}/pong", d))
        client.subscribe(f"test/{uid}/pong", lambda t, d: replies.append(d))
        client.publish(f"test/{uid}/ping", b"hello")
        assert wait_until(lambda: replies == [b"hello"])
    finally:
        client.stop()


def test_no_broker_is_a_clear_error() -> None:
    settings = MqttSettings(port=free_port(), connect_timeout_s=1.0)
    client = PahoCommunicator(settings, client_id="lonely")
    with pytest.raises(BrokerUnavailable, match="no connection"):
        client.start()
    offline = PahoCommunicator(settings, client_id="lonely2")
    with pytest.raises(BrokerUnavailable, match="not connected"):
        offline.publish("a/b", b"x")


def test_last_will_marks_a_killed_client_offline(mqtt_settings: MqttSettings, uid: str) -> None:
    ambulance = f"amb-{uid}"
    topic = topics.AMBULANCE_STATUS.topic(ambulance_id=ambulance)
    states: list[str] = []
    watcher = _client(mqtt_settings, f"watch-{uid}")
    watcher.subscribe(topic, lambda t, d: states.append(decode(d).payload.state))
    script = (
        "import sys, time\n"
        "from shared.settings import MqttSettings\n"
        "from shared.mqtt import PahoCommunicator, status_will\n"
        "from shared import topics\n"
        f"s = MqttSettings(host='127.0.0.1', port={mqtt_settings.port}, keepalive_s=5)\n"
        f"w = status_will(topics.AMBULANCE_STATUS, '{ambulance}', 'edge', "
        f"ambulance_id='{ambulance}')\n"
        f"c = PahoCommunicator(s, client_id='edge-{uid}', last_will=w)\n"
        "c.start(); print('up', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             cwd=Path(__file__).parents[2])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"up"
        assert wait_until(lambda: states[-1:] == ["online"])
        child.kill()  # kill -9: no DISCONNECT, so the broker publishes the will
        assert wait_until(lambda: states[-1:] == ["offline"], timeout=15)
    finally:
        child.kill()
        child.wait()
        watcher.stop()
    # Retained: a newcomer learns the state at once.
    late: list[str] = []
    newcomer = _client(mqtt_settings, f"late-{uid}")
    try:
        newcomer.subscribe(topic, lambda t, d: late.append(decode(d).payload.state))
        assert wait_until(lambda: late == ["offline"])
    finally:
        newcomer.stop()


def test_persistent_session_keeps_messages_while_away(mqtt_settings: MqttSettings,
                                                      uid: str) -> None:
    received: list[bytes] = []
    topic = f"test/{uid}/queued"
    sub = _client(mqtt_settings, f"persist-{uid}")
    sub.subscribe(topic, lambda t, d: received.append(d))
    sub.stop()
    pub = _client(mqtt_settings, f"pub-{uid}")
    pub.publish(topic, b"while-away", qos=1)
    pub.stop()
    again = PahoCommunicator(mqtt_settings, client_id=f"persist-{uid}")
    again.subscribe(topic, lambda t, d: received.append(d))
    again.start()
    try:
        assert wait_until(lambda: received == [b"while-away"])
    finally:
        again.stop()


def test_reconnects_and_resubscribes_after_broker_restart(tmp_path: Path, uid: str) -> None:
    broker = MosquittoBroker(workdir=tmp_path)
    broker.start()
    settings = broker.mqtt_settings(reconnect_min_s=0.2, reconnect_max_s=1.0,
                                    publish_timeout_s=5)
    received: list[bytes] = []
    sub = _client(settings, f"resub-{uid}")
    sub.subscribe("test/after", lambda t, d: received.append(d))
    try:
        broker.kill()
        assert wait_until(lambda: not sub.connected, timeout=10)
        broker.start()
        assert sub.wait_connected(15)
        pub = _client(settings, f"pub-{uid}")
        pub.publish("test/after", b"back")
        pub.stop()
        assert wait_until(lambda: received == [b"back"])
    finally:
        sub.stop()
        broker.cleanup()


def test_messenger_rejects_malformed_messages_and_keeps_going(
        mqtt_settings: MqttSettings, uid: str) -> None:
    hospital = f"er-{uid}"
    got: list[int] = []
    hub = _client(mqtt_settings, f"hub-{uid}")
    messenger = Messenger(hub, sender="hub")
    messenger.on(topics.ER_CAPACITY, lambda e, ids: got.append(e.payload.er_beds_free),
                 hospital_id=hospital)
    er = _client(mqtt_settings, f"er-{uid}",
                 last_will=status_will(topics.ER_STATUS, hospital, "er", hospital_id=hospital))
    try:
        topic = topics.ER_CAPACITY.topic(hospital_id=hospital)
        er.publish(topic, b"\x00garbage")
        Messenger(er, sender=hospital).send(topics.ER_CAPACITY,
                                            CapacityV1(er_beds_free=4, icu_beds_free=0),
                                            hospital_id=hospital)
        assert wait_until(lambda: got == [4])
        assert messenger.rejected["MalformedMessage"] == 1
    finally:
        er.stop()
        hub.stop()
        # leave no retained state behind for other tests
        cleaner = _client(mqtt_settings, f"clean-{uid}")
        cleaner.publish(topics.ER_CAPACITY.topic(hospital_id=hospital), b"", retain=True)
        cleaner.publish(topics.ER_STATUS.topic(hospital_id=hospital), b"", retain=True)
        cleaner.stop()


def test_concurrent_publishers(mqtt_settings: MqttSettings, uid: str) -> None:
    received: list[bytes] = []
    sub = _client(mqtt_settings, f"many-sub-{uid}")
    sub.subscribe(f"test/{uid}/+", lambda t, d: received.append(d))
    pub = _client(mqtt_settings, f"many-pub-{uid}")

    def burst(n: int) -> None:
        for i in range(50):
            pub.publish(f"test/{uid}/{n}", f"{n}-{i}".encode())

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wait_until(lambda: len(received) == 200)
        assert len(set(received)) == 200
    finally:
        pub.stop()
        sub.stop()


def test_services_started_before_the_broker_connect_when_it_comes(tmp_path: Path,
                                                                  uid: str) -> None:
    """An ambulance computer boots in a dead zone: the agent must come up anyway."""
    from edge_agent.agent import EdgeAgent
    from edge_agent.settings import load_edge_settings

    port = free_port()
    settings = MqttSettings(port=port, reconnect_min_s=0.2, reconnect_max_s=1.0)
    agent = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=settings))
    agent.start(wait=False)
    try:
        assert not agent.communicator.connected
        broker = MosquittoBroker(port=port, workdir=tmp_path)
        broker.start()
        try:
            assert wait_until(lambda: agent.communicator.connected, timeout=15)
        finally:
            agent.stop()
            broker.cleanup()
    finally:
        agent.stop()
