"""Server-sent events: small JSON notes about what changed, for the pages.

Several hub workers may serve one database, so changes are not announced in
process: each stream polls the database every ``interval_s`` for cases,
offers, capacities and ambulances changed since its last look, and sends one
event per change. The page then fetches what changed. A user bound to one ER
hears only about cases offered to that ER (the same rule as the REST routes),
its own hospital, and the ambulances bringing those cases.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from hospital_hub.models import Ambulance, Case, Hospital, Offer, utcnow

OVERLAP = timedelta(seconds=3)
"""Look this far behind the last poll: a transaction may commit a little after its timestamps."""


@dataclass
class EventFeed:
    """The changes one user may hear about, polled from the database."""

    engine: Engine
    hospital_id: str | None
    """None: every case (admins, dispatchers); else only this ER's."""
    since: datetime = field(default_factory=utcnow)
    _seen: dict[tuple[str, str, str], datetime] = field(default_factory=dict)

    def _offered(self) -> Any:
        return select(Offer.case_id).where(Offer.hospital_id == self.hospital_id)

    def poll(self) -> list[dict[str, Any]]:
        """The events since the last poll, each at most once."""
        started = utcnow()
        after = self.since - OVERLAP
        found: list[tuple[str, str, datetime, dict[str, Any]]] = []
        with Session(self.engine) as session:
            cases = select(Case).where(col(Case.updated_at) > after)
            offers = select(Offer).where(or_(col(Offer.created_at) > after,
                                             col(Offer.decided_at) > after))
            hospitals = select(Hospital).where(col(Hospital.capacity_at) > after)
            ambulances = select(Ambulance).where(or_(col(Ambulance.position_at) > after,
                                                     col(Ambulance.status_at) > after))
            if self.hospital_id is not None:
                cases = cases.where(col(Case.id).in_(self._offered()))
                offers = offers.where(Offer.hospital_id == self.hospital_id)
                hospitals = hospitals.where(Hospital.id == self.hospital_id)
                ambulances = ambulances.where(col(Ambulance.id).in_(
                    select(Case.ambulance_id).where(col(Case.id).in_(self._offered()))))
            for case in session.exec(cases.limit(500)):
                found.append(("case", case.id, case.updated_at, {
                    "case_id": case.id, "status": case.status.value,
                    "triage_level": case.triage_level}))
            for offer in session.exec(offers.limit(500)):
                at = max(offer.created_at, offer.decided_at or offer.created_at)
                found.append(("offer", f"{offer.case_id}/{offer.hospital_id}", at, {
                    "case_id": offer.case_id, "hospital_id": offer.hospital_id,
                    "state": offer.state.value}))
            for hospital in session.exec(hospitals.limit(500)):
                assert hospital.capacity_at is not None
                found.append(("hospital", hospital.id, hospital.capacity_at,
                              {"hospital_id": hospital.id}))
            for ambulance in session.exec(ambulances.limit(500)):
                at = max(t for t in (ambulance.position_at, ambulance.status_at) if t is not None)
                found.append(("ambulance", ambulance.id, at, {"ambulance_id": ambulance.id}))
        events = []
        for kind, key, at, body in found:
            mark = (kind, key, at.isoformat())
            if mark not in self._seen:
                self._seen[mark] = at
                events.append({"kind": kind, "at": at.isoformat(), **body})
        self.since = started
        self._seen = {k: t for k, t in self._seen.items() if t > self.since - 2 * OVERLAP}
        return events


def _frame(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(feed: EventFeed, is_disconnected: Callable[[], Awaitable[bool]],
                 interval_s: float = 0.5, max_s: float = 300.0,
                 keepalive_s: float = 15.0) -> AsyncIterator[str]:
    """The SSE frames of ``feed``: ``ready`` first, then one ``message`` per
    change, a comment every ``keepalive_s``; ends after ``max_s`` (the browser
    reconnects by itself) or when the client has gone."""
    yield "retry: 1000\n" + _frame({"kind": "ready"}, "ready")
    deadline = time.monotonic() + max_s
    last_sent = time.monotonic()
    while time.monotonic() < deadline:
        if await is_disconnected():
            return
        for event in await run_in_threadpool(feed.poll):
            yield _frame(event)
            last_sent = time.monotonic()
        if time.monotonic() - last_sent >= keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
