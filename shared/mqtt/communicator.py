"""The transport interface: MQTT in production, in-memory in unit tests."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

RawHandler = Callable[[str, bytes], None]
"""Called with (topic, payload bytes) for each message matching a subscription."""


@dataclass(frozen=True)
class LastWill:
    """Retained message the broker publishes if the client vanishes, and the
    online message the client publishes on each connect."""

    topic: str
    online: bytes
    offline: bytes


class Communicator(ABC):
    """Publish and subscribe raw bytes with broker acknowledgement.

    Implementations deliver messages to handlers on worker threads, never on
    the network thread, so a handler may publish; QoS 1 messages are handled
    in order on one thread, QoS 0 telemetry on another (handlers must be
    thread-safe across the two). An exception in a handler is logged and never
    stops delivery.
    """

    @abstractmethod
    def start(self, wait: bool = True) -> None:
        """Connect. With ``wait``, block until connected or raise BrokerUnavailable."""

    @abstractmethod
    def stop(self) -> None:
        """Publish the offline status (if any), disconnect and stop the threads."""

    @abstractmethod
    def subscribe(self, topic_filter: str, handler: RawHandler, qos: int = 1) -> None:
        """Subscribe now (waiting for the broker's acknowledgement when connected)
        and again after every reconnect."""

    @abstractmethod
    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Publish and, for QoS 1 and 2, wait for the broker's acknowledgement.

        Raises:
            BrokerUnavailable: not connected.
            PublishTimeout: no acknowledgement within ``timeout``.
        """

    def publish_many(
        self, messages: list[tuple[str, bytes, int, bool]], timeout: float | None = None
    ) -> int:
        """Publish (topic, payload, qos, retain) messages in order and return how
        many, from the first, the broker acknowledged. Implementations may
        pipeline: send all, then wait for the acks."""
        done = 0
        for topic, payload, qos, retain in messages:
            self.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
            done += 1
        return done

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether the broker connection is up now."""


def strip_share(topic_filter: str) -> str:
    """``$share/group/a/b`` -> ``a/b``: incoming topics never carry the prefix."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


@functools.lru_cache(maxsize=1024)
def _levels(topic_filter: str) -> tuple[str, ...]:
    return tuple(strip_share(topic_filter).split("/"))


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (``+`` one level, ``#`` the rest,
    ``$share/group/`` ignored), as ``paho.mqtt.client.topic_matches_sub`` says,
    without building a matcher for every call (tens of microseconds each)."""
    levels = _levels(topic_filter)
    parts = topic.split("/")
    if parts[0].startswith("$") and levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(parts) or (level != "+" and level != parts[index]):
            return False
    return len(levels) == len(parts)
