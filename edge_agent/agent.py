"""The edge agent: diagnoses X-rays, queues cases durably, and hears the decision.

Each X-ray is read once (:class:`edge_agent.operators.XrayInput`); the pipeline
returns what it found and the agent makes that the case's ``DiagnosisV1``
(:func:`edge_agent.case_message.diagnosis_message`). Every case message goes
through the durable outbox (:mod:`edge_agent.outbox`): ``submit`` returns as
soon as the case is on disk, whether or not the broker is reachable, and the
sender forwards it when it can. Positions are telemetry (QoS 0, only the latest
matters) and bypass the outbox. ``goldenhour edge run`` wires the agent with its
outbox, updater, crew page and receivers in :class:`edge_agent.runtime.EdgeRuntime`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.case_message import diagnosis_message
from edge_agent.chunks import MEDIA_TYPES, image_chunks
from edge_agent.intake import IntakeReporter, IntakeTally, refusal_outcome
from edge_agent.metrics import EdgeMetrics
from edge_agent.operators import XrayInput
from edge_agent.outbox import Outbox, OutboxFull, OutboxSender, Pending
from edge_agent.pipeline import DiagnosisPipeline, build_pipeline
from edge_agent.pipeline_slot import PipelineSlot
from edge_agent.position_reporter import PositionPace
from edge_agent.settings import EdgeSettings
from edge_agent.triage import assess
from shared import topics
from shared.background import BackgroundLoop
from shared.errors import InputImageError, MessagingError
from shared.ids import new_case_id
from shared.logs import case_context
from shared.messages import (
    CaseDecisionV1,
    CaseStatusV1,
    CaseUpdateV1,
    DiagnosisV1,
    Envelope,
    Patient,
    Payload,
    Position,
    PositionV1,
)
from shared.mqtt import Communicator, Messenger, OutgoingMessage, PahoCommunicator, build_message, status_will

logger = logging.getLogger(__name__)


@dataclass
class CaseRecord:
    """One case as the ambulance sees it."""

    case_id: str
    source: str
    triage_level: int
    queued_at: float = field(default_factory=time.monotonic)
    published_at: float | None = None
    """``time.monotonic()`` when the broker acknowledged the diagnosis."""
    decision: CaseDecisionV1 | None = None
    status: CaseStatusV1 | None = None
    """The latest state the hub reported."""
    diagnosis: DiagnosisV1 | None = None
    """The AI result sent for this case (kept in memory for the crew page)."""
    decision_latency_s: float | None = None
    """From the diagnosis reaching the broker to the decision's arrival."""
    done: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)


class EdgeAgent:
    """One ambulance's agent.

    ``announce`` makes it the ambulance's voice on the broker (retained
    status with last will, periodic positions); a one-shot CLI sender sets it
    False so it never marks the ambulance offline when it exits. ``outbox``:
    the one the :class:`edge_agent.runtime.EdgeRuntime` opened (and closes);
    without it the agent opens its own, at ``outbox_path`` or in the state folder.
    """

    def __init__(
        self,
        settings: EdgeSettings,
        communicator: Communicator | None = None,
        pipeline: DiagnosisPipeline | None = None,
        *,
        announce: bool = True,
        client_id: str | None = None,
        outbox_path: Path | None = None,
        outbox: Outbox | None = None,
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
        self.models = PipelineSlot(pipeline or build_pipeline(settings))
        """The pipeline in use; a model update swaps it between diagnoses."""
        self.position = Position(lat=settings.lat, lon=settings.lon)
        self._owns_outbox = outbox is None
        self.outbox = outbox if outbox is not None else open_outbox(settings, outbox_path)
        """Where every case message waits for the broker (the runtime's, or the agent's own)."""
        self.sender = OutboxSender(self.outbox, self.communicator, self._on_sent,
                                   confirm_timeout_s=settings.confirm_timeout_s)
        self.cases: dict[str, CaseRecord] = {}
        self._seen_decisions: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._position_pace = PositionPace(settings, lambda: list(self.cases.values()),
                                           self.outbox.case_docs)
        self._position_loop = BackgroundLoop("edge-position", self._report_position,
                                             settings.position_interval_s, join_timeout_s=5)
        self._rng = random.Random(self.ambulance_id)
        self.metrics = EdgeMetrics(self.ambulance_id, outbox_depth=self.outbox.pending,
                                   unconfirmed=self.outbox.unconfirmed,
                                   connected=lambda: self.communicator.connected,
                                   model=self._model)
        """Prometheus metrics (served at /metrics on the crew page)."""
        # Only the ambulance's voice counts intake: a one-shot sender shares its state folder.
        self.intake = IntakeTally(settings.state_dir / f"intake-{self.ambulance_id}.json") \
            if announce else None
        """Images diagnosed and refused per model, published retained on ambulance/{id}/intake."""
        self._intake_reporter = IntakeReporter(
            self.messenger, self.ambulance_id, self.intake,
            lambda: self.communicator.connected) if self.intake is not None else None

    @property
    def pipeline(self) -> DiagnosisPipeline:
        """The pipeline that the next diagnosis runs on."""
        return self.models.current

    def _model(self) -> tuple[str, str]:
        info = self.models.current.classifier.info
        return info.name, info.version

    def start(self, wait: bool = True) -> None:
        """Subscribe to this ambulance's decisions, connect and forward the outbox."""
        self.messenger.on(topics.CASE_DECISION, self._on_decision, ambulance_id=self.ambulance_id)
        self.messenger.on(topics.CASE_STATUS, self._on_status, ambulance_id=self.ambulance_id)
        self.communicator.start(wait=wait)
        self.sender.start()
        if self.announce:
            self._position_loop.start()
        if self._intake_reporter is not None:
            self._intake_reporter.start()
        count, size = self.outbox.pending()
        logger.info("edge agent started", extra={
            "ambulance_id": self.ambulance_id, "model": self.pipeline.classifier.info.name,
            "outbox_messages": count, "outbox_bytes": size})

    def stop(self) -> None:
        """Stop reporting and forwarding, and disconnect (queued messages stay on disk;
        an outbox given to the agent is closed by whoever gave it)."""
        self._position_loop.stop()
        if self._intake_reporter is not None:
            self._intake_reporter.stop()
        self.sender.stop()
        self.communicator.stop()
        if self._owns_outbox:
            self.outbox.close()

    # -- cases -------------------------------------------------------------------------
    def submit(self, path: Path, patient: Patient | None = None) -> CaseRecord:
        """Diagnose ``path`` and queue the case: the diagnosis first, then the
        full image in chunks. Returns once the case is safely on disk.

        Raises:
            InputImageError: the image cannot be used (nothing is queued).
            OutboxFull: the outbox is at its disk budget.
        """
        case_id = new_case_id()
        with case_context(case_id):  # every log line of this diagnosis names the case
            try:
                record = self._submit(case_id, XrayInput.read(path), patient)
            except InputImageError as exc:
                self.metrics.count_submission("unusable_image")
                if self.intake is not None:
                    self.intake.count(*self._model(), refusal_outcome(exc))
                raise
            except OutboxFull:
                self.metrics.count_submission("outbox_full")
                raise
            except Exception:
                self.metrics.count_submission("failed")
                raise
        self.metrics.count_submission("queued", record.triage_level)
        if self.intake is not None and record.diagnosis is not None:
            self.intake.count(record.diagnosis.model.name, record.diagnosis.model.version, "diagnosed")
        return record

    def diagnose(self, xray: XrayInput, patient: Patient | None = None) -> DiagnosisV1:
        """Run the current pipeline on ``xray`` and make the result this ambulance's message.

        Raises:
            InputImageError: the image cannot be used.
        """
        return diagnosis_message(self.models.run(xray), ambulance_id=self.ambulance_id,
                                 position=self.position, patient=patient)

    def _submit(self, case_id: str, xray: XrayInput, patient: Patient | None) -> CaseRecord:
        diagnosis = self.diagnose(xray, patient)
        self.metrics.observe_diagnosis(diagnosis)
        messages = [self._message(topics.CASE_DIAGNOSIS, diagnosis, case_id, kind="diagnosis")]
        if self.settings.send_full_image:
            media = MEDIA_TYPES[diagnosis.image.format]
            messages += [self._message(topics.CASE_IMAGE, chunk, case_id, kind="image",
                                       ref=chunk.image_sha256)
                         for chunk in image_chunks(xray.file.data, media, self.ambulance_id,
                                                   sha256=xray.file.sha256)]
        source = xray.file.name
        record = CaseRecord(case_id=case_id, source=source,
                            triage_level=diagnosis.triage.level, diagnosis=diagnosis)
        with self._lock:
            self.cases[case_id] = record
        self.outbox.record_case(case_id, source, diagnosis.triage.level)
        self.outbox.save_case_doc(case_id, "diagnosis", diagnosis.model_dump_json(
            exclude={"image": {"thumbnail_jpeg"}}))
        if patient is not None:
            self.outbox.save_case_doc(case_id, "patient", patient.model_dump_json())
        self.outbox.put(messages, case_id)
        self.sender.wake()
        self._position_loop.wake()  # a case is under way: report now, then every second
        logger.info("case queued", extra={"case_id": case_id, "ambulance_id": self.ambulance_id,
                                          "triage_level": diagnosis.triage.level,
                                          "messages": len(messages)})
        return record

    def update(self, case_id: str, action: str, **fields: Any) -> None:
        """Queue a cancel, divert, patient, vitals or handover update for a case.

        Raises:
            ValidationError: the update lacks what its action needs.
            OutboxFull: the outbox is at its disk budget.
        """
        if action == "vitals" and fields.get("vitals") is not None and "triage" not in fields:
            diagnosis = self._diagnosis(case_id)
            if diagnosis is not None:
                fields["triage"] = assess(diagnosis.findings, fields["vitals"],
                                          placeholder=diagnosis.model.placeholder)
        payload = CaseUpdateV1(ambulance_id=self.ambulance_id, action=action, **fields)
        self.outbox.put([self._message(topics.CASE_UPDATE, payload, case_id, kind="update")], case_id)
        self.outbox.save_case_doc(case_id, f"update:{action}", payload.model_dump_json())
        self.sender.wake()
        logger.info("case update queued", extra={"case_id": case_id, "action": action})

    def _diagnosis(self, case_id: str) -> DiagnosisV1 | None:
        """The case's diagnosis, from memory or (after a restart) from the outbox's documents."""
        with self._lock:
            record = self.cases.get(case_id)
        if record is not None and record.diagnosis is not None:
            return record.diagnosis
        stored = self.outbox.case_docs(case_id).get("diagnosis")
        return DiagnosisV1.model_validate_json(stored) if stored else None

    def _message(self, spec: topics.TopicSpec, payload: Payload, case_id: str, *, kind: str,
                 ref: str | None = None) -> OutgoingMessage:
        return build_message(spec, payload, sender=self.ambulance_id, case_id=case_id, kind=kind,
                             ref=ref, ambulance_id=self.ambulance_id)

    def wait_for_decision(self, case_id: str, timeout: float | None = None) -> CaseRecord:
        """Block until the hub's decision for ``case_id`` arrives.

        Raises:
            TimeoutError: none arrived in time.
        """
        record = self.cases[case_id]
        if not record.done.wait(self.settings.decision_timeout_s if timeout is None else timeout):
            raise TimeoutError(f"no decision for case {case_id} yet")
        return record

    def _on_sent(self, rows: list[Pending]) -> None:
        now = time.monotonic()
        for row in rows:
            if row.kind != "diagnosis" or row.case_id is None:
                continue
            self.outbox.mark_case(row.case_id, sent=True)
            with self._lock:
                record = self.cases.get(row.case_id)
            if record is not None:
                record.published_at = now
                record.sent.set()
            logger.info("case delivered to the broker", extra={"case_id": row.case_id})

    # -- what the hub tells us -----------------------------------------------------------
    def _on_decision(self, envelope: Envelope[Any], ids: dict[str, str]) -> None:
        decision: CaseDecisionV1 = envelope.payload
        case_id = ids["case_id"]
        with self._lock:
            if envelope.message_id in self._seen_decisions:
                logger.info("duplicate decision dropped", extra={"case_id": case_id})
                return
            self._seen_decisions.add(envelope.message_id)
            record = self.cases.get(case_id)
        ignored = self._ignore_decision(case_id, decision, record)
        if ignored is not None:
            reason, detail = ignored
            self.metrics.decisions_ignored.labels(reason=reason).inc()
            logger.warning("decision ignored: %s", detail, extra={
                "case_id": case_id, "status": decision.status, "hospital_id": decision.hospital_id,
                "reason": reason})
            return
        self.metrics.decisions.labels(status=decision.status).inc()
        self.outbox.mark_case(case_id, decision=decision.status)
        self.outbox.save_case_doc(case_id, "decision", decision.model_dump_json())
        self.outbox.confirm(case_id)
        latency = None
        if record is not None:
            latency = time.monotonic() - (record.published_at or record.queued_at)
            record.decision, record.decision_latency_s = decision, latency
            record.done.set()
        logger.info(
            "decision received",
            extra={"case_id": case_id, "status": decision.status,
                   "hospital_id": decision.hospital_id, "eta_min": decision.eta_min,
                   "latency_ms": round(latency * 1000, 1) if latency is not None else None,
                   "note": decision.message},
        )

    def _ignore_decision(self, case_id: str, decision: CaseDecisionV1,
                         record: CaseRecord | None) -> tuple[str, str] | None:
        """(reason, detail) when a decision contradicts what the hub told us before, else None.

        An acceptance must name an ER the case was offered to, when the case's
        offers are known (from its last ``case_status``); a ``no_er_available``
        must not undo an acceptance.
        """
        docs = self.outbox.case_docs(case_id)
        status = record.status if record is not None and record.status is not None else (
            CaseStatusV1.model_validate_json(docs["status"]) if docs.get("status") else None)
        previous = record.decision if record is not None and record.decision is not None else (
            CaseDecisionV1.model_validate_json(docs["decision"]) if docs.get("decision") else None)
        if decision.status == "accepted" and status is not None and status.offers:
            offered = {offer.hospital_id for offer in status.offers}
            if decision.hospital_id not in offered:
                return ("not_offered", f"{decision.hospital_id} was never offered this case "
                                       f"(offered: {', '.join(sorted(offered))})")
        if decision.status == "no_er_available" and previous is not None and previous.status == "accepted":
            return "after_acceptance", f"no ER available arrived after {previous.hospital_id} accepted"
        return None

    def _on_status(self, envelope: Envelope[Any], ids: dict[str, str]) -> None:
        status: CaseStatusV1 = envelope.payload
        self.outbox.confirm(ids["case_id"], images=status.images_verified or ())
        self.outbox.save_case_doc(ids["case_id"], "status", status.model_dump_json())
        with self._lock:
            record = self.cases.get(ids["case_id"])
            if record is not None:
                record.status = status
        logger.info("case status", extra={
            "case_id": ids["case_id"], "state": status.state, "note": status.message,
            "offers": ", ".join(f"{o.hospital_id}:{o.state}" for o in status.offers)})

    def _report_position(self) -> float:
        """Publish a (simulated) GPS position; returns the seconds to the next
        (1 s with a case under way, else 20 s: :mod:`edge_agent.position_reporter`)."""
        self.position = Position(
            lat=min(90.0, max(-90.0, self.position.lat + self._rng.uniform(-5e-4, 5e-4))),
            lon=min(180.0, max(-180.0, self.position.lon + self._rng.uniform(-5e-4, 5e-4))),
        )
        try:
            self.messenger.send(topics.AMBULANCE_POSITION, PositionV1(position=self.position),
                                ambulance_id=self.ambulance_id, timeout=2.0)
        except MessagingError as exc:
            logger.debug("position not sent", extra={"error": str(exc)})
        return self._position_pace.interval()


def open_outbox(settings: EdgeSettings, path: Path | None = None) -> Outbox:
    """The ambulance's outbox: ``path``, or its file in the state folder, within the disk budget."""
    return Outbox(path or settings.state_dir / f"outbox-{settings.ambulance_id}.sqlite3",
                  max_bytes=int(settings.outbox_max_mb * 1024 * 1024))
