"""Broker security against a real Mosquitto: TLS, one user per device, the ACL.

What Mosquitto 2.0.11 does, verified here:
- a forbidden QoS 1 publish is answered with PUBACK 0x87 (Not authorized) on
  MQTT 5, which the client raises as ``PublishRefused``; on MQTT 3.1.1 it is
  acknowledged and silently dropped; a forbidden QoS 0 publish is dropped;
- a forbidden subscription is GRANTED in the SUBACK (``acl_file`` does not
  check subscriptions), but the read ACL is applied to every message, retained
  ones included, so the subscriber receives nothing;
- a wrong password, an unknown user and an anonymous client get CONNACK 0x87
  (not 0x86), which the client raises as ``BrokerRefused`` at once;
- a last will on a topic the user may not write is never published.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from shared import topics
from shared.broker import MosquittoBroker, find_mosquitto, free_port, wait_for_port
from shared.broker_security import Device, acl_rules, make_certs, prepare
from shared.errors import BrokerRefused, BrokerUnavailable, PublishRefused
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.services import require, wait_until

NOT_AUTHORIZED = 0x87
QUIET_S = 0.7
"""How long a message that must not arrive is waited for (loopback: ms)."""

DEVICES = [Device("ambulance", "amb-1"), Device("ambulance", "amb-2"), Device("er", "er-1"),
           Device("er", "er-2"), Device("hub", "h1"), Device("hub", "h2")]
CASE = "20250101T120000Z-0000abcd"


@dataclass
class Secured:
    """A secured broker and the passwords of its users."""

    broker: MosquittoBroker
    passwords: dict[str, str]
    folder: Path


@dataclass
class Inbox:
    """Messages one subscription received."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def __call__(self, topic: str, data: bytes) -> None:
        self.messages.append((topic, data))

    def payloads(self) -> list[bytes]:
        return [data for _, data in self.messages]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Mosquitto with TLS, passwords and the ACL, on a free loopback port."""
    require(find_mosquitto() is not None, "mosquitto is not installed (apt-get install mosquitto)")
    require(shutil.which("openssl") is not None, "openssl is not installed")
    folder = tmp_path_factory.mktemp("broker-security")
    security, passwords = prepare(folder, DEVICES)
    broker = MosquittoBroker(security=security)
    broker.start()
    yield Secured(broker, passwords, folder)
    broker.cleanup()


@pytest.fixture
def connect(secured: Secured, uid: str) -> Iterator[Callable[..., PahoCommunicator]]:
    """Connect as a broker user (MQTT 5, TLS); every client is stopped afterwards."""
    clients: list[PahoCommunicator] = []

    def make(user: str | None, password: str | None = None, **overrides: object) -> PahoCommunicator:
        options: dict[str, object] = {
            "username": user, "password": password or secured.passwords.get(user or ""),
            "connect_timeout_s": 3.0, "publish_timeout_s": 3.0, "session_expiry_s": 0}
        settings = secured.broker.mqtt_settings(**(options | overrides))
        client = PahoCommunicator(settings, client_id=f"{user}-{uid}-{len(clients)}")
        clients.append(client)
        client.start()
        return client

    yield make
    for client in clients:
        client.stop()


def listen(client: PahoCommunicator, topic_filter: str) -> Inbox:
    inbox = Inbox()
    client.subscribe(topic_filter, inbox)
    return inbox


def test_acl_is_derived_from_the_topic_contract() -> None:
    amb = dict((topic, access) for access, topic in acl_rules(Device("ambulance", "amb-1")))
    assert amb == {
        "goldenhour/v1/ambulance/amb-1/status": "write",
        "goldenhour/v1/ambulance/amb-1/position": "write",
        "goldenhour/v1/ambulance/amb-1/intake": "write",
        "goldenhour/v1/ambulance/amb-1/case/+/diagnosis": "write",
        "goldenhour/v1/ambulance/amb-1/case/+/image": "write",
        "goldenhour/v1/ambulance/amb-1/case/+/update": "write",
        "goldenhour/v1/ambulance/amb-1/case/+/decision": "read",
        "goldenhour/v1/ambulance/amb-1/case/+/status": "read",
        "goldenhour/v1/hub/+/status": "read",
    }
    er = sorted(acl_rules(Device("er", "er-1")))
    assert er == [("read", "goldenhour/v1/er/er-1/offer/+"), ("read", "goldenhour/v1/hub/+/status"),
                  ("write", "goldenhour/v1/er/er-1/capacity"),
                  ("write", "goldenhour/v1/er/er-1/decision/+"),
                  ("write", "goldenhour/v1/er/er-1/status")]
    hub_writes = {topic for access, topic in acl_rules(Device("hub", "h1")) if access == "write"}
    assert hub_writes == {"goldenhour/v1/er/+/offer/+", "goldenhour/v1/ambulance/+/case/+/decision",
                          "goldenhour/v1/ambulance/+/case/+/status", "goldenhour/v1/dispatch/alert/+",
                          "goldenhour/v1/hub/h1/status"}


def test_every_allowed_flow_works(connect: Callable[..., PahoCommunicator]) -> None:
    hub, amb, er = connect("hub-h1"), connect("amb-1"), connect("er-1")
    share = "hub"
    hub_in = {spec.key: listen(hub, topics.shared_subscription(share, spec.subscription()))
              for spec in (topics.CASE_DIAGNOSIS, topics.CASE_IMAGE, topics.CASE_UPDATE,
                           topics.AMBULANCE_POSITION, topics.ER_DECISION)}
    hub_in |= {spec.key: listen(hub, spec.subscription())
               for spec in (topics.AMBULANCE_STATUS, topics.AMBULANCE_INTAKE, topics.ER_CAPACITY,
                            topics.ER_STATUS)}
    amb_in = {spec.key: listen(amb, spec.subscription(ambulance_id="amb-1"))
              for spec in (topics.CASE_DECISION, topics.CASE_STATUS)}
    amb_in["hub_status"] = listen(amb, topics.HUB_STATUS.subscription())
    er_in = {"er_offer": listen(er, topics.ER_OFFER.subscription(hospital_id="er-1")),
             "hub_status": listen(er, topics.HUB_STATUS.subscription())}

    sent: dict[str, list[tuple[PahoCommunicator, str]]] = {"hub": [], "amb": [], "er": []}
    for spec in (topics.AMBULANCE_STATUS, topics.AMBULANCE_POSITION, topics.AMBULANCE_INTAKE,
                 topics.CASE_DIAGNOSIS, topics.CASE_IMAGE, topics.CASE_UPDATE):
        ids = {"ambulance_id": "amb-1", "case_id": CASE}
        topic = spec.topic(**{name: ids[name] for name in spec.placeholders})
        amb.publish(topic, spec.key.encode(), qos=spec.qos, retain=spec.retain)
        sent["hub"].append((hub, spec.key))
    for spec in (topics.ER_DECISION, topics.ER_CAPACITY, topics.ER_STATUS):
        ids = {"hospital_id": "er-1", "case_id": CASE}
        topic = spec.topic(**{name: ids[name] for name in spec.placeholders})
        er.publish(topic, spec.key.encode(), qos=spec.qos, retain=spec.retain)
    hub.publish(topics.ER_OFFER.topic(hospital_id="er-1", case_id=CASE), b"er_offer")
    hub.publish(topics.CASE_DECISION.topic(ambulance_id="amb-1", case_id=CASE), b"case_decision")
    hub.publish(topics.CASE_STATUS.topic(ambulance_id="amb-1", case_id=CASE), b"case_status")
    hub.publish(topics.DISPATCH_ALERT.topic(case_id=CASE), b"dispatch_alert")  # PUBACK success
    hub.publish(topics.HUB_STATUS.topic(hub_id="h1"), b"hub_status", retain=True)

    for inboxes in (hub_in, amb_in, er_in):
        for key, inbox in inboxes.items():
            assert wait_until(lambda inbox=inbox, key=key: key.encode() in inbox.payloads()), key


def test_hub_workers_split_cases_through_a_shared_subscription(
        connect: Callable[..., PahoCommunicator]) -> None:
    workers = [connect("hub-h1"), connect("hub-h2")]
    group = f"hub-{os.getpid()}"
    inboxes = [listen(worker, topics.shared_subscription(group, topics.CASE_DIAGNOSIS.subscription()))
               for worker in workers]
    amb = connect("amb-1")
    for n in range(20):
        amb.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=f"case-{n}"), b"%d" % n)
    assert wait_until(lambda: sum(len(inbox.messages) for inbox in inboxes) == 20)
    received = sorted(int(data) for inbox in inboxes for data in inbox.payloads())
    assert received == list(range(20))  # each case to exactly one worker
    assert all(inbox.messages for inbox in inboxes)  # mosquitto round-robins the group


FORBIDDEN_PUBLISHES = {
    "ambulance publishes a diagnosis as another ambulance":
        ("amb-1", topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-2", case_id=CASE), "hub-h1"),
    "ambulance publishes another ambulance's status":
        ("amb-1", topics.AMBULANCE_STATUS.topic(ambulance_id="amb-2"), "hub-h1"),
    "ambulance forges the hub's decision for its own case":
        ("amb-1", topics.CASE_DECISION.topic(ambulance_id="amb-1", case_id=CASE), "amb-1"),
    "ambulance publishes an ER's decision":
        ("amb-1", topics.ER_DECISION.topic(hospital_id="er-1", case_id=CASE), "hub-h1"),
    "ambulance publishes an offer":
        ("amb-1", topics.ER_OFFER.topic(hospital_id="er-1", case_id=CASE), "er-1"),
    "ER publishes another ER's decision":
        ("er-1", topics.ER_DECISION.topic(hospital_id="er-2", case_id=CASE), "hub-h1"),
    "ER publishes another ER's capacity":
        ("er-1", topics.ER_CAPACITY.topic(hospital_id="er-2"), "hub-h1"),
    "ER publishes a diagnosis":
        ("er-1", topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=CASE), "hub-h1"),
    "ER publishes an offer to itself":
        ("er-1", topics.ER_OFFER.topic(hospital_id="er-1", case_id=CASE), "er-1"),
    "ER publishes a case decision to an ambulance":
        ("er-1", topics.CASE_DECISION.topic(ambulance_id="amb-1", case_id=CASE), "amb-1"),
    "hub publishes another hub's status":
        ("hub-h1", topics.HUB_STATUS.topic(hub_id="h2"), "amb-1"),
    "hub publishes a diagnosis":
        ("hub-h1", topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=CASE), "hub-h2"),
    "topic outside the contract":
        ("amb-1", "goldenhour/v1/anything", "hub-h1"),
}


@pytest.mark.parametrize(("publisher", "topic", "reader"), list(FORBIDDEN_PUBLISHES.values()),
                         ids=list(FORBIDDEN_PUBLISHES))
def test_forbidden_publish_is_refused_with_puback_0x87(
        connect: Callable[..., PahoCommunicator], publisher: str, topic: str, reader: str) -> None:
    watch = listen(connect(reader), topic)  # the reader may read this topic (but the last)
    client = connect(publisher)
    with pytest.raises(PublishRefused, match="Not authorized") as refused:
        client.publish(topic, b"forged", retain=True)
    assert refused.value.reason_code == NOT_AUTHORIZED
    assert client.connected  # a refusal does not cost the connection
    time.sleep(QUIET_S)
    assert watch.messages == []


def test_forbidden_qos0_position_is_dropped_silently(connect: Callable[..., PahoCommunicator]) -> None:
    hub = connect("hub-h1")
    watch = listen(hub, topics.AMBULANCE_POSITION.subscription())
    amb = connect("amb-1")
    amb.publish(topics.AMBULANCE_POSITION.topic(ambulance_id="amb-2"), b"forged", qos=0)  # no PUBACK
    amb.publish(topics.AMBULANCE_POSITION.topic(ambulance_id="amb-1"), b"own", qos=0)
    assert wait_until(lambda: watch.payloads() == [b"own"])
    time.sleep(QUIET_S)
    assert watch.payloads() == [b"own"]


def test_publish_many_stops_at_a_refused_message(connect: Callable[..., PahoCommunicator]) -> None:
    amb = connect("amb-1")
    batch = [(topics.CASE_UPDATE.topic(ambulance_id="amb-1", case_id=CASE), b"1", 1, False),
             (topics.CASE_UPDATE.topic(ambulance_id="amb-2", case_id=CASE), b"2", 1, False),
             (topics.CASE_UPDATE.topic(ambulance_id="amb-1", case_id=CASE), b"3", 1, False)]
    assert amb.publish_many(batch) == 1


FORBIDDEN_SUBSCRIPTIONS = {
    "ambulance reads another ambulance's decisions":
        ("amb-1", topics.CASE_DECISION.subscription(ambulance_id="amb-2"), "hub-h1",
         topics.CASE_DECISION.topic(ambulance_id="amb-2", case_id=CASE), "amb-2", False),
    "ambulance reads another ambulance's case status":
        ("amb-1", "goldenhour/v1/ambulance/+/case/+/status", "hub-h1",
         topics.CASE_STATUS.topic(ambulance_id="amb-2", case_id=CASE), "amb-2", False),
    "ambulance reads offers":
        ("amb-1", topics.ER_OFFER.subscription(), "hub-h1",
         topics.ER_OFFER.topic(hospital_id="er-1", case_id=CASE), "er-1", False),
    "ambulance reads everything":
        ("amb-1", "#", "hub-h1", topics.ER_OFFER.topic(hospital_id="er-1", case_id=CASE), "er-1", False),
    "ER reads another ER's offers":
        ("er-1", topics.ER_OFFER.subscription(hospital_id="er-2"), "hub-h1",
         topics.ER_OFFER.topic(hospital_id="er-2", case_id=CASE), "er-2", False),
    "ER reads diagnoses":
        ("er-1", topics.CASE_DIAGNOSIS.subscription(), "amb-1",
         topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=CASE), "hub-h1", False),
    "ER reads another ER's decisions":
        ("er-1", topics.ER_DECISION.subscription(), "er-2",
         topics.ER_DECISION.topic(hospital_id="er-2", case_id=CASE), "hub-h1", False),
    "ambulance reads retained ER capacity":
        ("amb-1", topics.ER_CAPACITY.subscription(), "er-2",
         topics.ER_CAPACITY.topic(hospital_id="er-2"), "hub-h1", True),
}


@pytest.mark.parametrize(("user", "topic_filter", "publisher", "topic", "reader", "retain"),
                         list(FORBIDDEN_SUBSCRIPTIONS.values()), ids=list(FORBIDDEN_SUBSCRIPTIONS))
def test_forbidden_subscription_receives_nothing(
        connect: Callable[..., PahoCommunicator], user: str, topic_filter: str, publisher: str,
        topic: str, reader: str, retain: bool) -> None:
    legit = listen(connect(reader), topic)  # control: the message is really sent
    if retain:  # already retained before the forbidden subscriber arrives
        connect(publisher).publish(topic, b"secret", retain=True)
        assert wait_until(lambda: b"secret" in legit.payloads())
    snoop = Inbox()
    # Mosquitto 2.0's acl_file does not check subscriptions: SUBACK grants it
    # (no SubscribeRefused); the read ACL then withholds every message.
    connect(user).subscribe(topic_filter, snoop)
    if not retain:
        connect(publisher).publish(topic, b"secret")
        assert wait_until(lambda: b"secret" in legit.payloads())
    time.sleep(QUIET_S)
    assert b"secret" not in snoop.payloads()
    # With '#', only what the user may read anyway (e.g. retained hub statuses).
    device = next(device for device in DEVICES if device.username == user)
    readable = [topic for access, topic in acl_rules(device) if access == "read"]
    assert all(any(mqtt.topic_matches_sub(sub, topic) for sub in readable)
               for topic, _ in snoop.messages), snoop.messages


@pytest.mark.parametrize(("user", "password"), [("amb-1", "wrong password"), ("nobody", "x"),
                                                (None, None)],
                         ids=["wrong password", "unknown user", "anonymous"])
def test_bad_credentials_are_refused_at_connect(
        connect: Callable[..., PahoCommunicator], user: str | None, password: str | None) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerRefused, match="refused the connection") as refused:
        connect(user, password or "", connect_timeout_s=10.0)
    assert refused.value.reason_code == NOT_AUTHORIZED  # mosquitto 2.0.11: 0x87, not 0x86
    assert time.monotonic() - started < 5  # at once, not after the connect timeout


def test_plain_tcp_cannot_talk_to_the_tls_listener(connect: Callable[..., PahoCommunicator]) -> None:
    with pytest.raises(BrokerUnavailable, match="no connection"):
        connect("amb-1", tls_ca_file=None, connect_timeout_s=2.0)


def test_a_broker_certificate_from_another_ca_is_refused(
        connect: Callable[..., PahoCommunicator], tmp_path: Path) -> None:
    make_certs(tmp_path / "other", "localhost")
    with pytest.raises(BrokerUnavailable, match="over TLS"):
        connect("amb-1", tls_ca_file=tmp_path / "other" / "ca.crt", connect_timeout_s=2.0)


def _crash_with_will(secured: Secured, user: str, will_topic: str, client_id: str) -> None:
    """Connect with a last will, then vanish without DISCONNECT (as a crash does)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(user, secured.passwords[user])
    client.tls_set(ca_certs=str(secured.broker.security.ca_file))  # type: ignore[union-attr]
    client.will_set(will_topic, b"will", qos=1)
    client.connect(secured.broker.host, secured.broker.port)
    client.loop_start()
    assert wait_until(client.is_connected)
    client.loop_stop()
    client.socket().close()


def test_last_will_only_on_the_users_own_topics(secured: Secured,
                                                connect: Callable[..., PahoCommunicator],
                                                uid: str) -> None:
    watch = listen(connect("hub-h1"), topics.AMBULANCE_STATUS.subscription())
    _crash_with_will(secured, "amb-1", topics.AMBULANCE_STATUS.topic(ambulance_id="amb-2"), f"f-{uid}")
    _crash_with_will(secured, "amb-1", topics.AMBULANCE_STATUS.topic(ambulance_id="amb-1"), f"o-{uid}")
    wills = lambda: [topic for topic, data in watch.messages if data == b"will"]  # noqa: E731
    assert wait_until(lambda: wills() != [])
    time.sleep(QUIET_S)
    assert wills() == [topics.AMBULANCE_STATUS.topic(ambulance_id="amb-1")]


def test_mqtt311_refusals_are_silent_drops(connect: Callable[..., PahoCommunicator]) -> None:
    """MQTT 3.1.1 has no PUBACK reason codes: the publish 'succeeds' and is dropped."""
    watch = listen(connect("hub-h1"), topics.CASE_DIAGNOSIS.subscription())
    amb = connect("amb-1", protocol="3.1.1")
    amb.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-2", case_id=CASE), b"forged")
    amb.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=CASE), b"own")
    assert wait_until(lambda: watch.payloads() == [b"own"])
    time.sleep(QUIET_S)
    assert watch.payloads() == [b"own"]
    with pytest.raises(BrokerRefused):
        connect("amb-1", "wrong", protocol="3.1.1")


def test_client_certificates_when_the_broker_requires_them(tmp_path: Path, uid: str) -> None:
    require(find_mosquitto() is not None, "mosquitto is not installed")
    security, passwords = prepare(tmp_path, [Device("ambulance", "amb-1")], client_certs=True,
                                  require_certificate=True)
    broker = MosquittoBroker(security=security)
    broker.start()
    try:
        base = {"username": "amb-1", "password": passwords["amb-1"], "connect_timeout_s": 2.0}
        without = PahoCommunicator(broker.mqtt_settings(**base), client_id=f"nocert-{uid}")
        with pytest.raises(BrokerUnavailable):
            without.start()
        certs = tmp_path / "certs"
        settings = broker.mqtt_settings(**base, tls_cert_file=certs / "client-amb-1.crt",
                                        tls_key_file=certs / "client-amb-1.key")
        client = PahoCommunicator(settings, client_id=f"cert-{uid}")
        client.start()
        try:
            client.publish(topics.AMBULANCE_STATUS.topic(ambulance_id="amb-1"), b"online")
        finally:
            client.stop()
    finally:
        broker.cleanup()


def test_deploy_template_starts_a_secured_broker(secured: Secured, uid: str) -> None:
    """deploy/mosquitto-secure.conf, with its paths and port replaced, works as written."""
    template = Path(__file__).parents[2] / "deploy" / "mosquitto-secure.conf"
    folder = Path(tempfile.mkdtemp(prefix="goldenhour-template-"))
    try:
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(secured.folder / "certs" / name, folder / name)
        for name in ("passwd", "acl"):
            shutil.copy(secured.folder / name, folder / name)
        port = free_port()
        config = (template.read_text().replace("/etc/mosquitto/goldenhour/", f"{folder}/")
                  .replace("listener 8883", f"listener {port} 127.0.0.1")
                  .replace("/var/lib/mosquitto/", f"{folder}/"))
        (folder / "mosquitto.conf").write_text(config)
        if os.geteuid() == 0:  # mosquitto drops root to its own user, which must read the files
            user = pwd.getpwnam("mosquitto")
            for path in [folder, *folder.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)
        process = subprocess.Popen([str(find_mosquitto()), "-c", str(folder / "mosquitto.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert wait_for_port("127.0.0.1", port, 10), process.stderr
            settings = MqttSettings(port=port, username="amb-1", password=secured.passwords["amb-1"],
                                    tls_ca_file=folder / "ca.crt", connect_timeout_s=3.0)
            client = PahoCommunicator(settings, client_id=f"template-{uid}")
            client.start()
            try:
                client.publish(topics.AMBULANCE_STATUS.topic(ambulance_id="amb-1"), b"online")
                with pytest.raises(PublishRefused):
                    client.publish(topics.AMBULANCE_STATUS.topic(ambulance_id="amb-2"), b"forged")
            finally:
                client.stop()
        finally:
            process.terminate()
            process.wait(timeout=10)
            if process.stderr:
                process.stderr.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
