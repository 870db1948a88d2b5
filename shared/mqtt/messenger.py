"""Typed messaging on top of a :class:`Communicator`.

``send`` wraps a payload in an envelope and publishes it with the QoS and
retain flag that the topic contract prescribes. ``on`` subscribes a handler
that only ever sees valid envelopes whose schema and identifiers agree with
the topic; anything else is rejected with a logged, specific reason.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from shared import __version__
from shared.errors import ContractError, TopicMismatch
from shared.logs import case_context
from shared.messages import Envelope, Payload, StatusV1, decode
from shared.mqtt.communicator import Communicator, LastWill
from shared.mqtt.delivery import OutgoingMessage, address, build_message
from shared.topics import TopicSpec, shared_subscription

logger = logging.getLogger(__name__)

EnvelopeHandler = Callable[[Envelope[Any], dict[str, str]], None]
"""Called with the decoded envelope and the topic's placeholder values."""

_OWNER = {"edge": "ambulance_id", "er": "hospital_id"}
"""On topics these publish, the envelope's sender must be the topic's id.

This catches mistakes and naive forgeries; only broker ACLs (deploy/) stop a
client that lies about its sender."""


def status_will(
    spec: TopicSpec, sender: str, role: Literal["edge", "hub", "er"], **ids: str
) -> LastWill:
    """Build the retained online message and offline last will for a participant."""

    def status(state: Literal["online", "offline"]) -> OutgoingMessage:
        payload = StatusV1(role=role, state=state, software_version=__version__)
        return build_message(spec, payload, sender=sender, **ids)

    online, offline = status("online"), status("offline")
    return LastWill(topic=online.topic, online=online.data, offline=offline.data)


class Messenger:
    """Sends and receives contract messages for one participant (``sender``)."""

    def __init__(self, communicator: Communicator, sender: str) -> None:
        self.communicator = communicator
        self.sender = sender
        self._lock = threading.Lock()
        self.rejected: Counter[str] = Counter()
        """Rejected messages by error class name; for health pages and tests."""

    def send(
        self,
        spec: TopicSpec,
        payload: Payload,
        *,
        case_id: str | None = None,
        message_id: uuid.UUID | None = None,
        timeout: float | None = None,
        **ids: str,
    ) -> Envelope[Any]:
        """Publish ``payload`` on ``spec``'s topic and wait for the broker's ack.

        ``case_id`` fills the envelope and, if the topic has one, the topic.
        Passing the ``message_id`` of an earlier attempt makes a retry a
        duplicate that receivers drop, not a second message.
        """
        message = build_message(spec, payload, sender=self.sender, case_id=case_id,
                                message_id=message_id, **ids)
        self._publish(message, timeout)
        assert message.envelope is not None  # built above
        return message.envelope

    def publish_envelope(self, spec: TopicSpec, envelope: Envelope[Any], *,
                         timeout: float | None = None, **ids: str) -> None:
        """Publish an envelope built earlier (a retry keeps its message id)."""
        self._publish(address(spec, envelope, **ids), timeout)

    def _publish(self, message: OutgoingMessage, timeout: float | None) -> None:
        self.communicator.publish(message.topic, message.data, qos=message.qos,
                                  retain=message.retain, timeout=timeout)

    def on(
        self,
        spec: TopicSpec,
        handler: EnvelopeHandler,
        *,
        share_group: str | None = None,
        **ids: str,
    ) -> None:
        """Subscribe ``handler`` to ``spec`` (placeholders in ``ids`` fixed, others ``+``)."""
        topic_filter = spec.subscription(**ids)
        if share_group:
            topic_filter = shared_subscription(share_group, topic_filter)

        def receive(topic: str, data: bytes) -> None:
            if not data and spec.retain:
                logger.debug("retained message cleared", extra={"topic": topic})
                return
            try:
                envelope, values = self.check(spec, topic, data)
            except ContractError as exc:
                logger.warning(
                    "rejected message",
                    extra={"topic": topic, "error": type(exc).__name__, "detail": str(exc),
                           "bytes": len(data)},
                )
                with self._lock:  # counted after the log line: a count means it was logged
                    self.rejected[type(exc).__name__] += 1
                return
            # Every log line of the handler names the case (shared/logs.py).
            with case_context(envelope.case_id or values.get("case_id")):
                handler(envelope, values)

        self.communicator.subscribe(topic_filter, receive, qos=spec.qos)

    @staticmethod
    def check(spec: TopicSpec, topic: str, data: bytes) -> tuple[Envelope[Any], dict[str, str]]:
        """Decode ``data`` received on ``topic`` and check it against ``spec``.

        Raises:
            ContractError: the bytes, schema, or identifiers are not what the
                topic promises.
        """
        values = spec.match(topic)
        if values is None:
            raise TopicMismatch(f"topic {topic!r} does not match {spec.pattern}")
        envelope = decode(data, expected=spec.payload)
        if "case_id" in values and envelope.case_id != values["case_id"]:
            raise TopicMismatch(
                f"envelope case {envelope.case_id!r} differs from topic case {values['case_id']!r}"
            )
        for name, value in values.items():
            field = getattr(envelope.payload, name, None)
            if field is not None and field != value:
                raise TopicMismatch(f"payload {name} {field!r} differs from topic {value!r}")
        owner = _OWNER.get(spec.publisher)
        if owner in values and envelope.sender != values[owner]:
            raise TopicMismatch(
                f"sender {envelope.sender!r} may not publish on {owner} {values[owner]!r}'s topic"
            )
        return envelope, values


__all__ = ["EnvelopeHandler", "Messenger", "status_will", "ContractError"]
