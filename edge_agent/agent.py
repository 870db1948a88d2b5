"""The edge agent: diagnoses X-rays, publishes cases and hears the decision."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.pipeline import DiagnosisPipeline
from edge_agent.settings import EdgeSettings
from shared import topics
from shared.errors import MessagingError
from shared.ids import new_case_id
from shared.messages import (
    CaseDecisionV1,
    CaseStatusV1,
    CaseUpdateV1,
    Envelope,
    Patient,
    Position,
    PositionV1,
)
from shared.mqtt import Communicator, Messenger, PahoCommunicator, status_will

logger = logging.getLogger(__name__)


@dataclass
class CaseRecord:
    """One case as the ambulance sees it."""

    case_id: str
    source: str
    triage_level: int
    envelope: Envelope[Any]
    """The diagnosis as sent; a retry resends it with the same message id."""
    published_at: float | None = None
    """``time.monotonic()`` at the broker's acknowledgement; None until then."""
    decision: CaseDecisionV1 | None = None
    status: CaseStatusV1 | None = None
    """The latest state the hub reported."""
    decision_latency_s: float | None = None
    """From the diagnosis publish to the decision's arrival."""
    done: threading.Event = field(default_factory=threading.Event)


class EdgeAgent:
    """One ambulance's agent.

    ``announce`` makes it the ambulance's voice on the broker (retained
    status with last will, periodic positions); a one-shot CLI sender sets it
    False so it never marks the ambulance offline when it exits.
    """

    def __init__(
        self,
        settings: EdgeSettings,
        communicator: Communicator | None = None,
        pipeline: DiagnosisPipeline | None = None,
        *,
        announce: bool = True,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.ambulance_id = settings.ambulance_id
        self.announce = announce
        self.communicator = communicator or PahoCommunicator(
            settings.mqtt,
            client_id=client_id or f"goldenhour-edge-{settings.ambulance_id}",
            last_will=status_will(topics.AMBULANCE_STATUS, self.ambulance_id, "edge",
                                  ambulance_id=self.ambulance_id) if announce else None,
        )
        self.messenger = Messenger(self.communicator, sender=self.ambulance_id)
        self.pipeline = pipeline or DiagnosisPipeline()
        self.position = Position(lat=settings.lat, lon=settings.lon)
        self.cases: dict[str, CaseRecord] = {}
        self._seen_decisions: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._position_thread: threading.Thread | None = None
        self._rng = random.Random(self.ambulance_id)

    def start(self, wait: bool = True) -> None:
        """Subscribe to this ambulance's decisions and connect."""
        self.messenger.on(topics.CASE_DECISION, self._on_decision, ambulance_id=self.ambulance_id)
        self.messenger.on(topics.CASE_STATUS, self._on_status, ambulance_id=self.ambulance_id)
        self.communicator.start(wait=wait)
        if self.announce:
            self._stop.clear()
            self._position_thread = threading.Thread(target=self._report_position,
                                                     name="edge-position", daemon=True)
            self._position_thread.start()
        logger.info("edge agent started", extra={"ambulance_id": self.ambulance_id,
                                                 "model": self.pipeline.classifier.info.name})

    def stop(self) -> None:
        """Stop reporting and disconnect (publishing 'offline' if announcing)."""
        self._stop.set()
        if self._position_thread:
            self._position_thread.join(timeout=5)
        self.communicator.stop()

    def submit(self, path: Path, patient: Patient | None = None) -> CaseRecord:
        """Diagnose ``path`` and publish the case; returns once the broker has it.

        The case is recorded before it is sent, so a decision that comes back
        at once is never missed.

        Raises:
            InputImageError: the image cannot be used (nothing is published).
            MessagingError: the broker did not take the case; the record is
                kept in :attr:`cases` and :meth:`resend` retries it unchanged.
        """
        case_id = new_case_id()
        diagnosis = self.pipeline.run(path, ambulance_id=self.ambulance_id,
                                      position=self.position, patient=patient)
        record = CaseRecord(case_id=case_id, source=path.name,
                            triage_level=diagnosis.triage.level,
                            envelope=Envelope.wrap(diagnosis, sender=self.ambulance_id,
                                                   case_id=case_id))
        with self._lock:
            self.cases[case_id] = record
        self.resend(case_id)
        return record

    def resend(self, case_id: str) -> CaseRecord:
        """Publish a recorded case's diagnosis (again), with its original ids,
        so that the hub drops it if the first attempt did arrive."""
        record = self.cases[case_id]
        self.messenger.publish_envelope(topics.CASE_DIAGNOSIS, record.envelope,
                                        ambulance_id=self.ambulance_id, case_id=case_id)
        record.published_at = time.monotonic()
        logger.info("case published", extra={
            "case_id": case_id, "ambulance_id": self.ambulance_id,
            "message_id": str(record.envelope.message_id), "triage_level": record.triage_level})
        return record

    def unsent(self) -> list[str]:
        """Cases whose diagnosis the broker has not acknowledged yet."""
        with self._lock:
            return [c.case_id for c in self.cases.values() if c.published_at is None]

    def wait_for_decision(self, case_id: str, timeout: float | None = None) -> CaseRecord:
        """Block until the hub's decision for ``case_id`` arrives.

        Raises:
            TimeoutError: none arrived in time.
        """
        record = self.cases[case_id]
        if not record.done.wait(self.settings.decision_timeout_s if timeout is None else timeout):
            raise TimeoutError(f"no decision for case {case_id} yet")
        return record

    def _on_decision(self, envelope: Envelope[Any], ids: dict[str, str]) -> None:
        decision: CaseDecisionV1 = envelope.payload
        case_id = ids["case_id"]
        with self._lock:
            if envelope.message_id in self._seen_decisions:
                logger.info("duplicate decision dropped", extra={"case_id": case_id})
                return
            self._seen_decisions.add(envelope.message_id)
            record = self.cases.get(case_id)
        latency = None
        if record is not None:
            latency = time.monotonic() - (record.published_at or time.monotonic())
            record.decision, record.decision_latency_s = decision, latency
            record.done.set()
        logger.info(
            "decision received",
            extra={"case_id": case_id, "status": decision.status,
                   "hospital_id": decision.hospital_id, "eta_min": decision.eta_min,
                   "latency_ms": round(latency * 1000, 1) if latency is not None else None,
                   "note": decision.message},
        )

    def _on_status(self, envelope: Envelope[Any], ids: dict[str, str]) -> None:
        status: CaseStatusV1 = envelope.payload
        with self._lock:
            record = self.cases.get(ids["case_id"])
            if record is not None:
                record.status = status
        logger.info("case status", extra={
            "case_id": ids["case_id"], "state": status.state, "note": status.message,
            "offers": ", ".join(f"{o.hospital_id}:{o.state}" for o in status.offers)})

    def update(self, case_id: str, action: str, **fields: Any) -> None:
        """Send a cancel, divert, patient, vitals or handover update for a case.

        Raises:
            ValidationError: the update lacks what its action needs.
            MessagingError: the broker did not take it.
        """
        payload = CaseUpdateV1(ambulance_id=self.ambulance_id, action=action, **fields)
        self.messenger.send(topics.CASE_UPDATE, payload, case_id=case_id,
                            ambulance_id=self.ambulance_id)
        logger.info("case update sent", extra={"case_id": case_id, "action": action})

    def _report_position(self) -> None:
        """Publish a (simulated) GPS position every few seconds."""
        while not self._stop.wait(self.settings.position_interval_s):
            self.position = Position(
                lat=min(90.0, max(-90.0, self.position.lat + self._rng.uniform(-5e-4, 5e-4))),
                lon=min(180.0, max(-180.0, self.position.lon + self._rng.uniform(-5e-4, 5e-4))),
            )
            try:
                self.messenger.send(topics.AMBULANCE_POSITION, PositionV1(position=self.position),
                                    ambulance_id=self.ambulance_id, timeout=2.0)
            except MessagingError as exc:
                logger.debug("position not sent", extra={"error": str(exc)})
