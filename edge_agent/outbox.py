"""The edge's durable outbox: store first, forward when the broker acknowledges.

Every outgoing case message (diagnosis, image chunks, updates) is written to a
SQLite database (WAL, ``synchronous=FULL``: it survives ``kill -9`` and power
loss) before anything is sent, and leaves the queue only after the broker's
PUBACK. A sender thread forwards the rows oldest first, so a case's messages
keep their order after any outage. A disk budget bounds the file; a put that
would exceed it raises :class:`OutboxFull`, which the agent reports loudly.

A broker's PUBACK is not the end of the road: a broker killed before it saved
the message loses it. So diagnoses and image chunks move to a ``sent`` table
on PUBACK and are dropped only when the hub confirms them (any case status
confirms the diagnosis; ``images_verified`` confirms an image). What stays
unconfirmed too long is queued again, with its original message ids, which
the hub drops if it did get them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.background import BackgroundLoop
from shared.errors import GoldenhourError
from shared.mqtt import Communicator, OutgoingMessage, deliver

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT,
    kind TEXT NOT NULL,
    ref TEXT,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    case_id TEXT,
    kind TEXT NOT NULL,
    ref TEXT,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    case_id TEXT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    data BLOB NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS edge_case (
    case_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    source TEXT NOT NULL,
    triage_level INTEGER NOT NULL,
    sent_at REAL,
    decision TEXT,
    decided_at REAL
);
CREATE TABLE IF NOT EXISTS edge_case_doc (
    case_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (case_id, kind)
);
"""


_FAST_S, _SLOW_S = 0.5, 5.0
"""The sender's poll while the broker takes everything, and its longest back-off."""

CONFIRMED_KINDS = frozenset({"diagnosis", "image"})
"""Kinds kept after the broker's PUBACK until the hub confirms them."""


class OutboxFull(GoldenhourError):
    """The outbox reached its disk budget: nothing more can be queued."""


@dataclass(frozen=True)
class Pending:
    """One queued message."""

    id: int
    case_id: str | None
    kind: str
    ref: str | None
    topic: str
    qos: int
    retain: bool
    data: bytes


class Outbox:
    """A FIFO of messages on disk, safe to use from several threads."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database (the messages stay on disk)."""
        with self._lock:
            self._db.close()

    def put(self, messages: Sequence[OutgoingMessage], case_id: str | None) -> None:
        """Queue ``messages`` in one transaction (their ``kind`` and ``ref`` are
        kept: ``ref`` names what confirms a message, an image's sha256).

        Raises:
            OutboxFull: they would take the outbox past its disk budget.
        """
        size = sum(len(m.data) for m in messages)
        with self._lock:
            used = self._bytes()
            if used + size > self.max_bytes:
                logger.error("OUTBOX FULL: case not queued", extra={
                    "case_id": case_id, "used_bytes": used, "max_bytes": self.max_bytes})
                raise OutboxFull(f"outbox {self.path} holds {used} bytes; another {size} would "
                                 f"pass its budget of {self.max_bytes}")
            now = time.time()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO message (case_id, kind, ref, topic, qos, retain, data, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(case_id, m.kind, m.ref, m.topic, m.qos, int(m.retain), m.data, now)
                     for m in messages])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if used + size > 0.8 * self.max_bytes:
                logger.warning("outbox above 80% of its budget",
                               extra={"used_bytes": used + size, "max_bytes": self.max_bytes})

    def peek(self, limit: int) -> list[Pending]:
        """The oldest ``limit`` messages."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, case_id, kind, ref, topic, qos, retain, data FROM message "
                "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Pending(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7]) for r in rows]

    def remove(self, ids: Sequence[int]) -> None:
        """Delete messages outright (no confirmation awaited)."""
        if not ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM message WHERE id = ?", [(i,) for i in ids])

    def settle(self, rows: Sequence[Pending]) -> None:
        """The broker acknowledged ``rows``: keep those that await the hub's
        confirmation in ``sent``, drop the rest."""
        if not rows:
            return
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    if row.kind in CONFIRMED_KINDS:
                        self._db.execute(
                            "INSERT OR REPLACE INTO sent (id, case_id, kind, ref, topic, qos, "
                            "retain, data, created_at, sent_at) SELECT id, case_id, kind, ref, "
                            "topic, qos, retain, data, created_at, ? FROM message WHERE id = ?",
                            (now, row.id))
                    self._db.execute("DELETE FROM message WHERE id = ?", (row.id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def bury(self, row: Pending, error: str) -> None:
        """Take a message the broker refuses for good out of the queue, keeping
        it in ``dead`` for a person: one refused message must not block the rest."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR REPLACE INTO dead (id, case_id, kind, topic, data, "
                                 "error, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (row.id, row.case_id, row.kind, row.topic, row.data, error,
                                  time.time()))
                self._db.execute("DELETE FROM message WHERE id = ?", (row.id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        logger.info("refused message kept aside", extra={"case_id": row.case_id, "topic": row.topic})

    def confirm(self, case_id: str, images: Sequence[str] = ()) -> int:
        """The hub has the case (and these images): forget their sent messages."""
        with self._lock:
            done = self._db.execute("DELETE FROM sent WHERE case_id = ? AND kind = 'diagnosis'",
                                    (case_id,)).rowcount
            for sha in images:
                done += self._db.execute("DELETE FROM sent WHERE case_id = ? AND kind = 'image' "
                                         "AND ref = ?", (case_id, sha)).rowcount
        return int(done)

    def requeue_unconfirmed(self, older_than_s: float) -> int:
        """Queue again what the hub has not confirmed in ``older_than_s``, in its
        original order; returns how many messages."""
        cutoff = time.time() - older_than_s
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stale = self._db.execute(
                    "SELECT id, case_id, kind, ref, topic, qos, retain, data, created_at "
                    "FROM sent WHERE sent_at < ? ORDER BY id", (cutoff,)).fetchall()
                self._db.executemany(
                    "INSERT INTO message (case_id, kind, ref, topic, qos, retain, data, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [r[1:] for r in stale])
                self._db.executemany("DELETE FROM sent WHERE id = ?", [(r[0],) for r in stale])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if stale:
            logger.warning("hub has not confirmed; sending again",
                           extra={"messages": len(stale),
                                  "cases": len({r[1] for r in stale})})
        return len(stale)

    def unconfirmed(self) -> int:
        """How many sent messages still wait for the hub's confirmation."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sent").fetchone()[0])

    def unconfirmed_cases(self) -> list[str]:
        """Cases whose diagnosis the hub has not confirmed yet (queued or sent)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT case_id FROM message WHERE kind = 'diagnosis' UNION "
                "SELECT case_id FROM sent WHERE kind = 'diagnosis'").fetchall()
        return sorted(str(r[0]) for r in rows if r[0] is not None)

    def pending(self) -> tuple[int, int]:
        """How many messages, and how many bytes, wait to be sent."""
        with self._lock:
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM message").fetchone()
        return int(count), int(size)

    def _bytes(self) -> int:
        return int(self._db.execute(
            "SELECT (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM message) + "
            "(SELECT COALESCE(SUM(LENGTH(data)), 0) FROM sent)").fetchone()[0])

    # -- the ambulance's own record of its cases ------------------------------------
    def record_case(self, case_id: str, source: str, triage_level: int) -> None:
        """Remember a case made here (survives restarts; the crew page lists them)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO edge_case (case_id, created_at, source, "
                             "triage_level) VALUES (?, ?, ?, ?)",
                             (case_id, time.time(), source, triage_level))

    def mark_case(self, case_id: str, *, sent: bool = False, decision: str | None = None) -> None:
        """Note that a case's diagnosis reached the broker, or that it was decided."""
        with self._lock:
            if sent:
                self._db.execute("UPDATE edge_case SET sent_at = ? WHERE case_id = ? AND "
                                 "sent_at IS NULL", (time.time(), case_id))
            if decision is not None:
                self._db.execute("UPDATE edge_case SET decision = ?, decided_at = ? "
                                 "WHERE case_id = ?", (decision, time.time(), case_id))

    def save_case_doc(self, case_id: str, kind: str, data: str) -> None:
        """Keep the latest ``kind`` document (JSON text: diagnosis, status,
        decision, vitals, handover...) of a case, so the crew page survives a restart."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO edge_case_doc (case_id, kind, data, at) "
                             "VALUES (?, ?, ?, ?)", (case_id, kind, data, time.time()))

    def case_docs(self, case_id: str) -> dict[str, str]:
        """The latest document of each kind kept for a case."""
        with self._lock:
            rows = self._db.execute("SELECT kind, data FROM edge_case_doc WHERE case_id = ?",
                                    (case_id,)).fetchall()
        return {str(kind): str(data) for kind, data in rows}

    def cases(self) -> list[dict[str, object]]:
        """Every case made here, newest first."""
        with self._lock:
            cursor = self._db.execute("SELECT case_id, created_at, source, triage_level, "
                                      "sent_at, decision, decided_at FROM edge_case "
                                      "ORDER BY created_at DESC")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class OutboxSender:
    """Forwards the outbox to the broker in the background, oldest first
    (:func:`shared.mqtt.delivery.deliver`, the hub's send logic too)."""

    def __init__(self, outbox: Outbox, communicator: Communicator,
                 on_sent: Callable[[list[Pending]], None], batch: int = 32,
                 confirm_timeout_s: float = 60.0) -> None:
        self._outbox = outbox
        self._confirm_timeout_s = confirm_timeout_s
        self._last_requeue = time.monotonic()
        self._communicator = communicator
        self._on_sent = on_sent
        self._batch = batch
        self._delay = _FAST_S
        self._loop = BackgroundLoop("edge-outbox", self._round, _FAST_S)

    def start(self) -> None:
        """Start forwarding."""
        self._loop.start()

    def stop(self) -> None:
        """Stop forwarding (what is queued stays queued)."""
        self._loop.stop()

    def wake(self) -> None:
        """Forward now rather than at the next poll."""
        self._loop.wake()

    def _round(self) -> float:
        """One round; returns the wait before the next (backing off while the broker is away)."""
        try:
            if time.monotonic() - self._last_requeue > self._confirm_timeout_s / 4:
                self._last_requeue = time.monotonic()
                self._outbox.requeue_unconfirmed(self._confirm_timeout_s)
            emptied = self.flush()
        except Exception:  # the sender must outlive any single bad row or bug (and back off)
            logger.exception("outbox forwarding failed")
            emptied = False
        self._delay = _FAST_S if emptied else min(_SLOW_S, self._delay * 2)
        return self._delay

    def flush(self) -> bool:
        """Forward until the outbox is empty or the broker stops acknowledging;
        returns whether it is empty."""
        while not self._loop.stopping:
            if not self._communicator.connected:
                return False
            rows = self._outbox.peek(self._batch)
            if not rows:
                return True
            delivery = deliver(self._communicator, rows)
            self._outbox.settle(delivery.acknowledged)
            if delivery.acknowledged:
                self._on_sent(delivery.acknowledged)
            for row, error in delivery.refused:
                self._outbox.bury(row, error)
            if delivery.stalled is not None:
                return False
        return False
