"""paho-mqtt 2.x implementation of :class:`Communicator`.

Behaviour, after Home Assistant's MQTT client and against Frigate's pitfalls:
- a fixed client id and a persistent session (MQTT 5 session expiry, or
  ``clean_session=False`` on 3.1.1), so the broker queues QoS 1 messages while
  the client is away;
- a retained online status on every connect and a retained offline last will;
- resubscription on every connect, with the SUBACK awaited when subscribing
  from user code;
- publish waits for the PUBACK with a timeout, and a PUBACK with a failure
  reason code (MQTT 5, e.g. 0x87 Not authorized by the broker's ACL) raises
  :class:`PublishRefused`. MQTT 3.1.1 has no reason codes: there Mosquitto
  acknowledges a forbidden publish and drops it, so it cannot be detected;
- a connection the broker refuses (bad password, not authorized) fails
  ``start()`` at once with :class:`BrokerRefused`; a refused subscription
  raises :class:`SubscribeRefused` (or, when resubscribing after a reconnect,
  is logged with its topic filter);
- TLS (``tls_ca_file``) with an optional client certificate;
- messages are handled on a worker thread and acknowledged (manual ack) only
  after the handler returns, so a crash mid-handler means redelivery, not loss;
  an exception in a handler is logged and the next message is handled.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from shared.errors import (
    BrokerRefused,
    BrokerUnavailable,
    MessagingError,
    PublishRefused,
    PublishTimeout,
    SubscribeRefused,
)
from shared.mqtt.communicator import Communicator, LastWill, RawHandler, topic_matches
from shared.settings import MqttSettings

logger = logging.getLogger(__name__)


class PahoCommunicator(Communicator):
    """A broker connection for one service instance."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        last_will: LastWill | None = None,
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._last_will = last_will
        self._v5 = settings.protocol == "5"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if self._v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, password)
        if settings.tls_ca_file:
            self._client.tls_set(
                ca_certs=str(settings.tls_ca_file),
                certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
                keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if last_will:
            self._client.will_set(last_will.topic, last_will.offline, qos=1, retain=True)
        self._client.reconnect_delay_set(
            min_delay=max(1, round(settings.reconnect_min_s)),
            max_delay=max(1, round(settings.reconnect_max_s)),
        )
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = self._on_socket_open

        self._lock = threading.Lock()
        self._subscriptions: dict[str, tuple[int, RawHandler]] = {}
        self._suback: dict[int, tuple[threading.Event, list[ReasonCode]]] = {}
        self._resubscribing: dict[int, list[str]] = {}
        # The PUBACK reason code of each recent mid. Written by on_publish, which
        # paho calls before it marks the message published, so a waiter finds it.
        self._puback: dict[int, ReasonCode] = {}
        self._puback_lock = threading.Lock()
        self._connected = threading.Event()
        self._connect_answered = threading.Event()
        self._refusal: ReasonCode | None = None
        # QoS 0 telemetry (positions) has its own queue and thread, so a flood of
        # it never delays a case or a decision queued behind it.
        self._inboxes: dict[str, queue.Queue[mqtt.MQTTMessage | None]] = {
            "events": queue.Queue(), "telemetry": queue.Queue()}
        self._workers: list[threading.Thread] = []
        self._started = False
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        """Connect in the background; with ``wait``, block until connected."""
        if self._started:
            return
        self._started = True
        self._refusal = None
        self._connect_answered.clear()
        self._workers = [
            threading.Thread(target=self._work, args=(inbox,), daemon=True,
                             name=f"mqtt-{name}-{self._client_id}")
            for name, inbox in self._inboxes.items()
        ]
        for worker in self._workers:
            worker.start()
        kwargs: dict[str, Any] = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._settings.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self._client.connect_async(
            self._settings.host, self._settings.port, self._settings.keepalive_s, **kwargs
        )
        self._client.loop_start()
        if not wait:
            return
        self._connect_answered.wait(self._settings.connect_timeout_s)
        if self._connected.is_set():
            return
        refusal = self._refusal
        self.stop()
        broker = f"{self._settings.host}:{self._settings.port}"
        if refusal is not None:
            raise BrokerRefused(
                f"MQTT broker {broker} refused the connection of {self._client_id!r} "
                f"(user {self._settings.username!r}): {refusal} (0x{refusal.value:02x})",
                refusal.value,
            )
        tls = " over TLS (check the CA, host name and certificates)" if self._settings.tls_ca_file else ""
        raise BrokerUnavailable(
            f"no connection to MQTT broker {broker}{tls} "
            f"within {self._settings.connect_timeout_s:g} s"
        )

    def stop(self) -> None:
        """Say offline (retained), disconnect and stop the loop and worker."""
        if not self._started:
            return
        if self._last_will and self._connected.is_set():
            try:
                self.publish(self._last_will.topic, self._last_will.offline, retain=True,
                             timeout=2.0)
            except MessagingError as exc:
                logger.warning("could not publish offline status: %s", exc)
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._stopping = False
        self._connected.clear()
        for inbox in self._inboxes.values():
            inbox.put(None)
        for worker in self._workers:
            worker.join(timeout=5)
        self._started = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def queue_depths(self) -> dict[str, int]:
        """Messages received and waiting for their handler thread ("events" for
        QoS 1, "telemetry" for QoS 0); a load figure."""
        return {name: inbox.qsize() for name, inbox in self._inboxes.items()}

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` passes; return whether connected."""
        return self._connected.wait(timeout)

    # -- subscribe ----------------------------------------------------------
    def subscribe(self, topic_filter: str, handler: RawHandler, qos: int = 1) -> None:
        done = threading.Event()
        codes: list[ReasonCode] = []
        with self._lock:
            self._subscriptions[topic_filter] = (qos, handler)
            # Under the lock: _on_connect either saw this filter in its snapshot or
            # has not set "connected" yet, so no subscription falls between the two.
            if not self._connected.is_set():
                return
            result, mid = self._client.subscribe(topic_filter, qos)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                raise BrokerUnavailable(f"subscribe to {topic_filter} failed: {result}")
            self._suback[mid] = (done, codes)
        if not done.wait(self._settings.publish_timeout_s):
            with self._lock:
                self._suback.pop(mid, None)
            raise PublishTimeout(f"no SUBACK for {topic_filter}")
        failures = [code for code in codes if code.is_failure]
        if failures:
            raise SubscribeRefused(
                f"broker refused subscription {topic_filter}: {failures[0]} "
                f"(0x{failures[0].value:02x})", failures[0].value)
        logger.debug("subscribed", extra={"topic_filter": topic_filter, "qos": qos})

    # -- publish ------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
    ) -> None:
        if not self._connected.is_set():
            raise BrokerUnavailable(f"not connected to the broker; {topic} not published")
        timeout = self._settings.publish_timeout_s if timeout is None else timeout
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise BrokerUnavailable(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise PublishTimeout(f"broker did not acknowledge {topic} within {timeout:g} s")
        refusal = self._refused(info.mid)
        if refusal is not None:
            raise PublishRefused(
                f"broker refused publish to {topic}: {refusal} (0x{refusal.value:02x})",
                refusal.value)

    def _refused(self, mid: int) -> ReasonCode | None:
        """The failure reason code of the PUBACK for ``mid``, if it was one."""
        with self._puback_lock:
            code = self._puback.pop(mid, None)
        return code if code is not None and code.is_failure else None

    def publish_many(
        self, messages: list[tuple[str, bytes, int, bool]], timeout: float | None = None
    ) -> int:
        """Send every message, then wait for the acks: one round trip for the
        batch instead of one per message. Returns the acknowledged prefix; a
        message after a gap may still arrive, and is then a duplicate that
        receivers drop by message id. A message the broker refuses (MQTT 5
        PUBACK failure code) ends the prefix too, and is logged as an error."""
        if not self._connected.is_set():
            raise BrokerUnavailable("not connected to the broker")
        timeout = self._settings.publish_timeout_s if timeout is None else timeout
        infos = [self._client.publish(topic, payload, qos=qos, retain=retain)
                 for topic, payload, qos, retain in messages]
        deadline = time.monotonic() + timeout
        acknowledged = 0
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                break
            if not info.is_published():
                break
            refusal = self._refused(info.mid)
            if refusal is not None:
                logger.error("broker refused publish", extra={
                    "topic": messages[acknowledged][0], "reason": str(refusal),
                    "reason_code": refusal.value})
                break
            acknowledged += 1
        return acknowledged

    # -- paho callbacks (network thread: never block here) ------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("broker refused connection", extra={
                "client_id": self._client_id, "username": self._settings.username,
                "reason": str(reason_code), "reason_code": reason_code.value})
            self._refusal = reason_code
            self._connect_answered.set()
            return
        with self._lock:
            filters = [(topic, qos) for topic, (qos, _) in self._subscriptions.items()]
            if filters:
                result, mid = client.subscribe(filters)
                if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                    self._resubscribing[mid] = [topic for topic, _ in filters]
            self._refusal = None
            self._connected.set()
            self._connect_answered.set()
        if self._last_will:
            client.publish(self._last_will.topic, self._last_will.online, qos=1, retain=True)
        logger.info(
            "connected to broker",
            extra={
                "client_id": self._client_id,
                "broker": f"{self._settings.host}:{self._settings.port}",
                "session_present": flags.session_present,
                "resubscribed": len(filters),
            },
        )

    @staticmethod
    def _on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho leaves Nagle's algorithm on: a second small packet would wait for
        # the first one's TCP ack, tens of milliseconds on every batch.
        # (An ssl.SSLSocket is a socket.socket too.)
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping:
            logger.warning(
                "disconnected from broker; reconnecting",
                extra={"client_id": self._client_id, "reason": str(reason_code)},
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            waiter = self._suback.pop(mid, None)
            filters = self._resubscribing.pop(mid, [])
        if waiter:
            waiter[1].extend(reason_codes)
            waiter[0].set()
            return
        for index, code in enumerate(reason_codes):
            if code.is_failure:
                logger.error("broker refused a subscription", extra={
                    "client_id": self._client_id,
                    "topic_filter": filters[index] if index < len(filters) else None,
                    "reason": str(code), "reason_code": code.value})

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Every code is stored (a success overwrites a stale refusal of a reused
        # mid); paho reuses mids, so this holds at most 65535 entries.
        with self._puback_lock:
            self._puback[mid] = reason_code
        if reason_code.is_failure:
            logger.warning("broker refused a publish", extra={
                "client_id": self._client_id, "mid": mid, "reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inboxes["events" if message.qos else "telemetry"].put(message)

    # -- worker thread --------------------------------------------------------
    def _work(self, inbox: queue.Queue[mqtt.MQTTMessage | None]) -> None:
        while True:
            message = inbox.get()
            if message is None:
                return
            try:
                self._dispatch(message)
            except Exception:  # nothing may end this thread: it is the only one handling
                logger.exception("message dispatch failed")
            finally:
                if message.qos > 0:
                    try:
                        self._client.ack(message.mid, message.qos)
                    except Exception:
                        logger.exception("acknowledging a message failed")

    def _dispatch(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = [
                handler
                for topic_filter, (_, handler) in self._subscriptions.items()
                if topic_matches(topic_filter, message.topic)
            ]
        if not handlers:
            logger.debug("message with no handler", extra={"topic": message.topic})
        for handler in handlers:
            try:
                handler(message.topic, message.payload)
            except Exception:
                logger.exception("message handler failed", extra={"topic": message.topic})
