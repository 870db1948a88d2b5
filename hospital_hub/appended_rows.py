"""Rows a transaction only appends, written in bulk when it commits.

A case change adds several audit events and outbox messages that nothing
reads back in the same transaction. An ORM object per row, each flushed on
its own, was a large part of a case's hub CPU; instead :func:`append` queues
the row on the session and, just before the commit, after the session's own
flush (so a new case's row is there for the foreign keys), one insert of
many rows per table writes them in the order they were queued. A rollback, or a
transaction that ends without a commit, drops the queue with the rest of the
transaction's work.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, Table, event, insert
from sqlalchemy.orm import Session, SessionTransaction

_KEY = "goldenhour_appended_rows"


def append(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Queue ``row`` (every column but an autoincremented id) for ``table``."""
    session.info.setdefault(_KEY, []).append((table, row))


@event.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    queued: list[tuple[Table, dict[str, Any]]] | None = session.info.pop(_KEY, None)
    if not queued:
        return
    session.flush()
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for table, row in queued:  # each table's rows keep their order (and so their ids)
        by_table.setdefault(table, []).append(row)
    for table, rows in by_table.items():
        session.execute(_insert(table), rows)


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)  # built once, as the other hot statements


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_KEY, None)
