"""Simulated ERs for the demo and tests: real MQTT clients that answer offers.

Each one publishes its capacity (retained), listens for its offers and, after
a short delay, accepts or declines according to a policy. They exercise the
same topics a real ER gateway or console would.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, Literal

from shared import topics
from shared.errors import MessagingError
from shared.messages import CapacityV1, Envelope, ErDecisionV1, OfferV1
from shared.mqtt import Communicator, Messenger, PahoCommunicator, status_will
from shared.settings import MqttSettings

logger = logging.getLogger(__name__)

Decision = tuple[Literal["accept", "decline"], str | None]
Policy = Callable[[str, str, OfferV1], Decision]
"""(hospital_id, case_id, offer) -> (decision, reason)."""


def always(decision: Literal["accept", "decline"]) -> Policy:
    """A policy that always gives ``decision``."""
    return lambda hospital_id, case_id, offer: (
        decision, None if decision == "accept" else "simulated: no capacity"
    )


def chance(accept_probability: float) -> Policy:
    """Accept with a probability, decided by a hash of (hospital, case) so a
    rerun of the same case makes the same choice."""

    def policy(hospital_id: str, case_id: str, offer: OfferV1) -> Decision:
        digest = hashlib.sha256(f"{hospital_id}/{case_id}".encode()).digest()
        if digest[0] / 255 < accept_probability:
            return "accept", None
        return "decline", "simulated: ER full"

    return policy


class SimulatedEr:
    """One simulated ER connected to the broker."""

    def __init__(
        self,
        hospital_id: str,
        communicator: Communicator,
        policy: Policy,
        *,
        delay_s: float = 2.0,
        er_beds_free: int = 3,
    ) -> None:
        self.hospital_id = hospital_id
        self.policy = policy
        self.delay_s = delay_s
        self.er_beds_free = er_beds_free
        self.communicator = communicator
        self.messenger = Messenger(communicator, sender=hospital_id)
        self.offers: dict[str, OfferV1] = {}
        self._timers: list[threading.Timer] = []
        self._seen: set[uuid.UUID] = set()

    @classmethod
    def connect(cls, hospital_id: str, settings: MqttSettings, policy: Policy,
                client_id: str | None = None, **kwargs: Any) -> SimulatedEr:
        """Build one with its own broker connection and last will."""
        communicator = PahoCommunicator(
            settings, client_id=client_id or f"goldenhour-er-{hospital_id}",
            last_will=status_will(topics.ER_STATUS, hospital_id, "er", hospital_id=hospital_id),
        )
        return cls(hospital_id, communicator, policy, **kwargs)

    def start(self) -> None:
        """Connect, subscribe to this ER's offers and publish its capacity."""
        self.messenger.on(topics.ER_OFFER, self._on_offer, hospital_id=self.hospital_id)
        self.communicator.start()
        self.messenger.send(topics.ER_CAPACITY,
                            CapacityV1(er_beds_free=self.er_beds_free, icu_beds_free=1),
                            hospital_id=self.hospital_id)

    def stop(self) -> None:
        """Cancel pending decisions and disconnect."""
        for timer in self._timers:
            timer.cancel()
        self.communicator.stop()

    def _on_offer(self, envelope: Envelope[Any], ids: dict[str, str]) -> None:
        offer: OfferV1 = envelope.payload
        case_id = ids["case_id"]
        if envelope.message_id in self._seen:
            return  # a redelivery: this offer is already being answered
        self._seen.add(envelope.message_id)
        self.offers[case_id] = offer
        if offer.state != "open":
            logger.info("simulated ER saw offer withdrawn",
                        extra={"hospital_id": self.hospital_id, "case_id": case_id})
            return
        logger.info("simulated ER received offer",
                    extra={"hospital_id": self.hospital_id, "case_id": case_id,
                           "rank": offer.rank, "eta_min": offer.eta_min})
        timer = threading.Timer(self.delay_s, self._decide, args=(case_id, offer))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _decide(self, case_id: str, offer: OfferV1) -> None:
        current = self.offers.get(case_id)
        if current is not None and current.state != "open":
            return  # withdrawn while we thought about it
        decision, reason = self.policy(self.hospital_id, case_id, offer)
        try:
            self.messenger.send(
                topics.ER_DECISION,
                ErDecisionV1(hospital_id=self.hospital_id, decision=decision, reason=reason,
                             decided_by=f"simulated doctor at {self.hospital_id}"),
                case_id=case_id, hospital_id=self.hospital_id,
            )
        except MessagingError as exc:
            logger.warning("simulated ER could not send its decision",
                           extra={"hospital_id": self.hospital_id, "case_id": case_id,
                                  "error": str(exc)})
            return
        logger.info("simulated ER decided", extra={"hospital_id": self.hospital_id,
                                                   "case_id": case_id, "decision": decision})
