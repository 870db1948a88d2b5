"""Push an accepted case to the accepting ER's PACS with DICOM C-STORE.

When an ER accepts a case, :func:`queue_push` adds one :class:`PacsPush` row
per instance (the original ``image``, the AI ``sr`` and, when the diagnosis
has a heat map, the ``sc``; see :mod:`hospital_hub.dicom_results`) in the
same transaction as the acceptance, so a push is never lost. An ER without a
PACS in the registry is skipped, with a log line and a ``pacs_skipped`` case
event.

:class:`PacsPusher` (a background thread of every hub worker) then claims due
rows, builds their DICOM bytes once the full image has arrived and stores
them in the row, and sends them over one association per PACS, image first.
A row is done when the PACS answers success (0x0000; a warning, 0xB000,
0xB006 or 0xB007, means stored with changes and counts too); anything else
is retried with exponential backoff, for ever. Because the row keeps the
bytes it sent, a retry after a lost acknowledgement re-sends the same SOP
Instance UIDs, which a PACS files as the same instance. Rows are claimed with
a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer), so
several hub workers never send the same row at once. A divert or cancel
withdraws the pending pushes to the released ER; a case whose personal data
retention has deleted is not pushed any more.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.case_audit import record_event
from hospital_hub.db import session_scope
from hospital_hub.models import Case, CaseDiagnosis, CaseEvent, Hospital, PacsPush, utcnow
from shared.background import BackgroundLoop
from shared.errors import DicomExportError, NotFound, PacsError

if TYPE_CHECKING:
    from hospital_hub.dicom_results import DicomInstance

logger = logging.getLogger(__name__)

PENDING, SENT, ABANDONED = "pending", "sent", "abandoned"
ORDER = ("image", "sr", "sc")
"""The order of a case's instances on an association (the referenced image first)."""
SUCCESS = 0x0000
STORED_WITH_WARNING = frozenset({0xB000, 0xB006, 0xB007})
PURGED_EVENT = "personal_data_deleted"
"""The event kind with which :mod:`hospital_hub.retention` marks a purged case."""


@dataclass(frozen=True)
class PacsTarget:
    """Where an ER's PACS listens."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def target_of(hospital: Hospital) -> PacsTarget | None:
    """The hospital's PACS, or None when the registry names none."""
    if hospital.pacs_ae_title and hospital.pacs_host and hospital.pacs_port:
        return PacsTarget(hospital.pacs_ae_title, hospital.pacs_host, hospital.pacs_port)
    return None


def _has_heat_map(session: Session, case_id: str) -> bool:
    row = session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case_id)
                       .order_by(col(CaseDiagnosis.id).desc())).first()
    return bool(row is not None and row.payload.get("overlays"))


def queue_push(session: Session, case: Case, hospital: Hospital, actor: str) -> list[str]:
    """Queue the case's instances for ``hospital``'s PACS, in the caller's
    transaction (the acceptance); returns what was queued ([] without a PACS)."""
    target = target_of(hospital)
    if target is None:
        logger.info("accepting ER has no PACS configured; nothing pushed",
                    extra={"case_id": case.id, "hospital_id": hospital.id})
        record_event(session, case, "pacs_skipped", actor, hospital_id=hospital.id,
               reason="no PACS configured for this ER")
        return []
    kinds = ["image", "sr"] + (["sc"] if _has_heat_map(session, case.id) else [])
    now = utcnow()
    for what in kinds:
        row = session.exec(select(PacsPush).where(
            PacsPush.case_id == case.id, PacsPush.hospital_id == hospital.id,
            PacsPush.what == what)).first()
        if row is None:
            session.add(PacsPush(case_id=case.id, hospital_id=hospital.id, what=what,
                                 created_at=now, next_attempt_at=now))
        elif row.status == ABANDONED:  # accepted again after a divert
            row.status, row.next_attempt_at, row.attempts, row.last_error = PENDING, now, 0, None
            session.add(row)
    record_event(session, case, "pacs_queued", actor, hospital_id=hospital.id, instances=kinds,
           pacs=str(target))
    logger.info("PACS push queued", extra={"case_id": case.id, "hospital_id": hospital.id,
                                           "instances": kinds, "pacs": str(target)})
    return kinds


def withdraw(session: Session, case: Case, hospital_id: str, why: str, actor: str) -> int:
    """Abandon the pending pushes of ``case`` to ``hospital_id`` (the patient is
    not coming), in the caller's transaction; returns how many."""
    rows = session.exec(select(PacsPush).where(
        PacsPush.case_id == case.id, PacsPush.hospital_id == hospital_id,
        PacsPush.status == PENDING)).all()
    for row in rows:
        row.status, row.data, row.last_error = ABANDONED, None, why[:2000]
        session.add(row)
    if rows:
        record_event(session, case, "pacs_withdrawn", actor, hospital_id=hospital_id,
               instances=[r.what for r in rows])
    return len(rows)


# -- sending ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outgoing:
    """One claimed row ready to send."""

    row_id: int
    case_id: str
    what: str
    data: bytes


class StoreScu:
    """A C-STORE SCU (pynetdicom): one association per call, instances in order."""

    def __init__(self, calling_ae_title: str = "GOLDENHOUR", timeout_s: float = 30.0) -> None:
        self.calling_ae_title = calling_ae_title
        self.timeout_s = timeout_s

    def store(self, target: PacsTarget, instances: Sequence[bytes]) -> list[str | None]:
        """Send each Part 10 instance; returns, per instance, None when the PACS
        acknowledged it or the reason it did not."""
        # imported here, as in _prepare: importing the offer flow stays quick
        from pydicom import dcmread
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE

        datasets = [dcmread(io.BytesIO(data)) for data in instances]
        ae = AE(ae_title=self.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.connection_timeout = self.timeout_s
        contexts: set[tuple[str, tuple[str, ...]]] = set()
        for dataset in datasets:
            own = str(dataset.file_meta.TransferSyntaxUID)
            syntaxes = tuple(dict.fromkeys((own, ExplicitVRLittleEndian, ImplicitVRLittleEndian)))
            contexts.add((str(dataset.SOPClassUID), syntaxes))
        for sop_class, syntaxes in sorted(contexts):
            ae.add_requested_context(sop_class, list(syntaxes))
        assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
        if not assoc.is_established:
            why = ("rejected the association" if assoc.is_rejected else
                   "could not be reached (no association)")
            return [f"PACS {target} {why}"] * len(datasets)
        results: list[str | None] = []
        try:
            for dataset in datasets:
                results.append(self._send(assoc, dataset))
        finally:
            if assoc.is_established:
                assoc.release()
        return results

    @staticmethod
    def _send(assoc: Any, dataset: Any) -> str | None:
        try:
            status = assoc.send_c_store(dataset)
        except (ValueError, RuntimeError) as exc:  # no accepted context, association gone
            return f"not sent: {exc}"
        if not status or "Status" not in status:
            return "no answer from the PACS (timeout or connection lost)"
        code = int(status.Status)
        if code == SUCCESS or code in STORED_WITH_WARNING:
            return None
        return f"PACS answered status 0x{code:04X}"


class PacsPusher:
    """Sends queued pushes; :meth:`run_once` does one round, :meth:`start` runs
    rounds in a background thread."""

    def __init__(self, engine: Engine, *, calling_ae_title: str = "GOLDENHOUR",
                 retry_initial_s: float = 5.0, retry_max_s: float = 600.0,
                 timeout_s: float = 30.0, batch: int = 50, actor: str = "hub",
                 scu: StoreScu | None = None) -> None:
        self._engine = engine
        self._scu = scu or StoreScu(calling_ae_title, timeout_s)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._lease = timedelta(seconds=max(60.0, 4 * timeout_s))
        self._batch = batch
        self._actor = actor
        self._loop: BackgroundLoop | None = None

    def backoff_s(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed sends: doubling, capped."""
        return min(self._retry_max_s, self._retry_initial_s * 2 ** max(0, attempts - 1))

    # -- one round --------------------------------------------------------------------------
    def run_once(self, now: datetime | None = None) -> int:
        """Claim the due pushes, build what is missing, send; returns how many
        instances the PACSes acknowledged."""
        now = now or utcnow()
        claimed = self._claim(now)
        if not claimed:
            return 0
        ready: list[tuple[str, Outgoing]] = []
        by_case: dict[str, list[PacsPush]] = defaultdict(list)
        for row in claimed:
            by_case[row.case_id].append(row)
        for case_id, rows in by_case.items():
            ready += self._prepare(case_id, rows, now)
        sent = 0
        by_hospital: dict[str, list[Outgoing]] = defaultdict(list)
        for hospital_id, item in ready:
            by_hospital[hospital_id].append(item)
        for hospital_id, items in by_hospital.items():
            if self._loop is not None and self._loop.stopping:
                break  # the unsent keep their lease and are retried when it runs out
            sent += self._send(hospital_id, items, now)
        return sent

    def _claim(self, now: datetime) -> list[PacsPush]:
        with Session(self._engine) as session:  # a read first: no write lock when idle
            if session.exec(select(PacsPush.id).where(
                    PacsPush.status == PENDING, col(PacsPush.next_attempt_at) <= now)).first() is None:
                return []
        purged = exists().where(CaseEvent.case_id == PacsPush.case_id,
                                CaseEvent.kind == PURGED_EVENT)
        with session_scope(self._engine) as session:
            rows = list(session.exec(
                select(PacsPush).where(PacsPush.status == PENDING,
                                       col(PacsPush.next_attempt_at) <= now)
                .order_by(col(PacsPush.id)).limit(self._batch)
                .with_for_update(skip_locked=True)).all())
            gone = set(session.exec(select(PacsPush.id).where(
                col(PacsPush.id).in_([r.id for r in rows]), purged)).all()) if rows else set()
            for row in rows:
                if row.id in gone:
                    row.status, row.data = ABANDONED, None
                    row.last_error = "not sent: the case's personal data was deleted (retention)"
                else:
                    row.next_attempt_at = now + self._lease
                session.add(row)
            return [r for r in rows if r.id not in gone]

    def _prepare(self, case_id: str, rows: list[PacsPush],
                 now: datetime) -> list[tuple[str, Outgoing]]:
        """The rows' bytes, built (and stored in the rows) on their first send."""
        built: dict[str, DicomInstance] = {}
        if any(r.data is None for r in rows):
            from hospital_hub.dicom_results import case_instances  # highdicom: slow to import

            try:
                with Session(self._engine) as session:
                    case = session.get(Case, case_id)
                    if case is None:
                        raise NotFound(f"no case {case_id}")
                    built = case_instances(session, case)
            except NotFound as exc:
                self._postpone([r.id for r in rows if r.id is not None], str(exc),
                               now + timedelta(seconds=self._retry_initial_s), count=False)
                return []
            except DicomExportError as exc:
                logger.error("DICOM results cannot be built; will retry",
                             extra={"case_id": case_id, "error": str(exc)})
                self._postpone([r.id for r in rows if r.id is not None], str(exc), now, count=True)
                return []
        ready = []
        with session_scope(self._engine) as session:
            for claimed in rows:
                row = session.get(PacsPush, claimed.id)
                if row is None or row.status != PENDING:
                    continue
                if row.data is None:
                    instance = built.get(row.what)
                    if instance is None:
                        row.status = ABANDONED
                        row.last_error = f"nothing to send: the diagnosis has no {row.what}"
                        session.add(row)
                        continue
                    row.data, row.sop_class_uid = instance.data, instance.sop_class_uid
                    row.sop_instance_uid = instance.sop_instance_uid
                    session.add(row)
                assert row.id is not None and row.data is not None
                ready.append((row.hospital_id, Outgoing(row.id, row.case_id, row.what, row.data)))
        return ready

    def _postpone(self, row_ids: list[int], error: str, base: datetime, count: bool) -> None:
        """Retry later: after a backoff for a failure (``count``), at ``base`` otherwise."""
        with session_scope(self._engine) as session:
            for row_id in row_ids:
                row = session.get(PacsPush, row_id)
                if row is None or row.status != PENDING:
                    continue
                when = base
                if count:
                    row.attempts += 1
                    when = base + timedelta(seconds=self.backoff_s(row.attempts))
                row.last_error, row.next_attempt_at = error[:2000], when
                session.add(row)

    def _send(self, hospital_id: str, items: list[Outgoing], now: datetime) -> int:
        with Session(self._engine) as session:
            hospital = session.get(Hospital, hospital_id)
            target = target_of(hospital) if hospital is not None else None
        if target is None:
            self._postpone([i.row_id for i in items], f"ER {hospital_id} has no PACS configured",
                           now, count=True)
            return 0
        items = sorted(items, key=lambda i: (i.case_id, ORDER.index(i.what), i.row_id))
        try:
            results = self._scu.store(target, [i.data for i in items])
        except (OSError, RuntimeError, ValueError, PacsError) as exc:
            results = [f"PACS {target}: {exc}"] * len(items)
        sent = 0
        with session_scope(self._engine) as session:
            for item, error in zip(items, results, strict=True):
                row = session.get(PacsPush, item.row_id)
                if row is None:
                    continue
                row.attempts += 1
                if error is None:
                    row.status, row.sent_at, row.last_error, row.data = SENT, utcnow(), None, None
                    sent += 1
                    case = session.get(Case, item.case_id)
                    if case is not None:
                        record_event(session, case, "pacs_stored", self._actor, hospital_id=hospital_id,
                               instance=item.what, sop_instance_uid=row.sop_instance_uid)
                else:
                    row.last_error = error[:2000]
                    row.next_attempt_at = now + timedelta(seconds=self.backoff_s(row.attempts))
                session.add(row)
        failed = [i.what for i, e in zip(items, results, strict=True) if e is not None]
        if failed:
            logger.warning("PACS push failed; will retry", extra={
                "hospital_id": hospital_id, "pacs": str(target), "failed": failed,
                "error": next(e for e in results if e is not None)})
        if sent:
            logger.info("instances stored in PACS", extra={
                "hospital_id": hospital_id, "pacs": str(target), "stored": sent})
        return sent

    def pending(self) -> int:
        """How many pushes wait to be acknowledged."""
        with Session(self._engine) as session:
            return int(session.exec(select(func.count()).select_from(PacsPush)
                                    .where(PacsPush.status == PENDING)).one())

    # -- the background thread ---------------------------------------------------------------
    def start(self, interval_s: float) -> None:
        """Run :meth:`run_once` every ``interval_s`` in a daemon thread."""
        # One association (connect, three C-STOREs) is bounded by the SCU's timeouts.
        self._loop = BackgroundLoop("hub-pacs", self._round, interval_s,
                                    join_timeout_s=4 * self._scu.timeout_s + 5,
                                    failure="PACS push round failed")
        self._loop.start()

    def _round(self) -> None:
        self.run_once()

    def stop(self) -> None:
        """Stop the background thread (a send in progress finishes first)."""
        if self._loop is not None:
            self._loop.stop()
