"""The one way a contract message is built and handed to the broker.

:func:`build_message` wraps a payload for a topic of the contract (checking
that the topic carries that payload) into an :class:`OutgoingMessage`; the
messenger, the edge's outbox and the hub's outbox all build theirs here.
:func:`deliver` is the send logic both outboxes share: publish a batch, send
the first message the broker did not acknowledge alone, and report a message
the broker refuses for good so that the caller sets it aside instead of letting
it block the queue.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from shared.errors import MessagingError, PublishRefused, TopicMismatch
from shared.messages import Envelope, Payload, encode
from shared.topics import TopicSpec

if TYPE_CHECKING:
    from shared.mqtt.communicator import Communicator

logger = logging.getLogger(__name__)


class Publishable(Protocol):
    """What :func:`deliver` needs of a message (a built one or a stored row)."""

    @property
    def topic(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def qos(self) -> int: ...

    @property
    def retain(self) -> bool: ...


M = TypeVar("M", bound=Publishable)


@dataclass(frozen=True)
class OutgoingMessage:
    """One encoded message, addressed and ready to store or publish."""

    topic: str
    data: bytes
    qos: int = 1
    retain: bool = False
    kind: str = "message"
    """What the sender's outbox calls it (the edge's: ``diagnosis``, ``image``, ``update``)."""
    ref: str | None = None
    """What confirms it, when something does (an image chunk: the whole image's sha256)."""
    envelope: Envelope[Any] | None = field(default=None, repr=False, compare=False)
    """The envelope encoded in ``data``, when :func:`build_message` made it."""

    @property
    def message_id(self) -> uuid.UUID | None:
        return None if self.envelope is None else self.envelope.message_id


def build_message(spec: TopicSpec, payload: Payload, *, sender: str, case_id: str | None = None,
                  message_id: uuid.UUID | None = None, kind: str | None = None,
                  ref: str | None = None, **ids: str) -> OutgoingMessage:
    """Wrap ``payload`` in a new envelope for ``spec``'s topic.

    ``case_id`` fills the envelope and, when the topic has one, the topic;
    passing the ``message_id`` of an earlier attempt makes a retry a duplicate
    that receivers drop. ``kind`` defaults to the topic's key.

    Raises:
        TopicMismatch: the topic carries another payload, or an identifier is missing or invalid.
    """
    if "case_id" in spec.placeholders:
        if case_id is None:
            raise TopicMismatch(f"{spec.key} needs a case_id")
        ids = {**ids, "case_id": case_id}
    envelope = Envelope.wrap(_checked(spec, payload), sender=sender, case_id=case_id,
                             message_id=message_id)
    return address(spec, envelope, kind=kind, ref=ref, **ids)


def address(spec: TopicSpec, envelope: Envelope[Any], *, kind: str | None = None,
            ref: str | None = None, **ids: str) -> OutgoingMessage:
    """An envelope built earlier (a retry keeps its message id), addressed to ``spec``'s topic.

    Raises:
        TopicMismatch: as :func:`build_message`.
    """
    _checked(spec, envelope.payload)
    return OutgoingMessage(topic=spec.topic(**ids), data=encode(envelope), qos=spec.qos,
                           retain=spec.retain, kind=kind or spec.key, ref=ref, envelope=envelope)


def _checked(spec: TopicSpec, payload: Payload) -> Payload:
    if not isinstance(payload, spec.payload):
        raise TopicMismatch(f"{spec.key} carries {spec.payload.SCHEMA}, not {payload.SCHEMA}")
    return payload


@dataclass
class Delivery(Generic[M]):
    """What became of a batch handed to :func:`deliver`."""

    acknowledged: list[M] = field(default_factory=list)
    """Published and acknowledged by the broker, in order."""
    refused: list[tuple[M, str]] = field(default_factory=list)
    """Refused by the broker for good (an ACL, a size limit), with the reason:
    the caller sets them aside."""
    stalled: str | None = None
    """Why delivery stopped before the end of the batch (an outage: the rest is
    tried again later); None when every message was acknowledged or refused."""


def deliver(communicator: Communicator, batch: Sequence[M]) -> Delivery[M]:
    """Publish ``batch`` in order, pipelined.

    The first message the broker does not acknowledge is sent again alone: a
    refusal is permanent (it goes into ``refused`` and delivery carries on with
    the rest), anything else is an outage (delivery stops there).
    """
    result: Delivery[M] = Delivery()
    rest = list(batch)
    while rest:
        try:
            acknowledged = communicator.publish_many([(m.topic, m.data, m.qos, m.retain) for m in rest])
        except MessagingError as exc:
            logger.warning("delivery paused; will retry", extra={"error": str(exc)})
            result.stalled = str(exc)
            return result
        result.acknowledged += rest[:acknowledged]
        rest = rest[acknowledged:]
        if not rest:
            break
        first = rest.pop(0)
        try:
            communicator.publish(first.topic, first.data, qos=first.qos, retain=first.retain)
        except PublishRefused as exc:
            logger.error("message refused by the broker; kept aside",
                         extra={"topic": first.topic, "error": str(exc)})
            result.refused.append((first, str(exc)))
        except MessagingError as exc:
            logger.warning("delivery incomplete; will retry",
                           extra={"published": len(result.acknowledged), "error": str(exc)})
            result.stalled = str(exc)
            return result
        else:
            result.acknowledged.append(first)
    return result
