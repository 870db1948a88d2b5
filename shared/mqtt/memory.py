"""In-memory :class:`Communicator` for unit tests of pure logic.

Delivery is synchronous, in the publisher's thread, which keeps tests
deterministic. Retained messages and last wills behave as on a broker.
Integration tests use a real Mosquitto instead.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt

from shared.errors import BrokerUnavailable
from shared.mqtt.communicator import Communicator, LastWill, RawHandler, strip_share

logger = logging.getLogger(__name__)


class InMemoryBroker:
    """A broker in a dict: topic filters to clients, and retained messages."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._clients: list[InMemoryCommunicator] = []
        self.retained: dict[str, bytes] = {}
        self.published: list[tuple[str, bytes, bool]] = []

    def _attach(self, client: InMemoryCommunicator) -> None:
        with self._lock:
            self._clients.append(client)

    def _detach(self, client: InMemoryCommunicator) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """Route a message to every matching subscription of every attached client."""
        with self._lock:
            self.published.append((topic, payload, retain))
            if retain:
                if payload:
                    self.retained[topic] = payload
                else:
                    self.retained.pop(topic, None)
            clients = list(self._clients)
        for client in clients:
            client._deliver(topic, payload)

    def retained_for(self, topic_filter: str) -> list[tuple[str, bytes]]:
        """Retained messages that a new subscription to ``topic_filter`` receives."""
        with self._lock:
            return [(t, p) for t, p in self.retained.items() if mqtt.topic_matches_sub(topic_filter, t)]


class InMemoryCommunicator(Communicator):
    """One client of an :class:`InMemoryBroker`."""

    def __init__(self, broker: InMemoryBroker, *, last_will: LastWill | None = None) -> None:
        self._broker = broker
        self._last_will = last_will
        self._subscriptions: dict[str, RawHandler] = {}
        self._connected = False

    def start(self, wait: bool = True) -> None:
        self._broker._attach(self)
        self._connected = True
        if self._last_will:
            self._broker.publish(self._last_will.topic, self._last_will.online, retain=True)

    def stop(self) -> None:
        if self._connected and self._last_will:
            self._broker.publish(self._last_will.topic, self._last_will.offline, retain=True)
        self._connected = False
        self._broker._detach(self)

    def crash(self) -> None:
        """Vanish without a clean disconnect: the broker publishes the last will."""
        self._connected = False
        self._broker._detach(self)
        if self._last_will:
            self._broker.publish(self._last_will.topic, self._last_will.offline, retain=True)

    @property
    def connected(self) -> bool:
        return self._connected

    def subscribe(self, topic_filter: str, handler: RawHandler, qos: int = 1) -> None:
        self._subscriptions[topic_filter] = handler
        for topic, payload in self._broker.retained_for(strip_share(topic_filter)):
            self._call(handler, topic, payload)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
    ) -> None:
        if not self._connected:
            raise BrokerUnavailable(f"in-memory client is not connected; {topic} not published")
        self._broker.publish(topic, payload, retain)

    def _deliver(self, topic: str, payload: bytes) -> None:
        for topic_filter, handler in list(self._subscriptions.items()):
            if mqtt.topic_matches_sub(strip_share(topic_filter), topic):
                self._call(handler, topic, payload)

    @staticmethod
    def _call(handler: RawHandler, topic: str, payload: bytes) -> None:
        try:
            handler(topic, payload)
        except Exception:
            logger.exception("message handler failed", extra={"topic": topic})
