"""Live state: ER capacity (MQTT or console) and ambulance status and positions."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from hospital_hub.db import session_scope
from hospital_hub.models import Ambulance, Hospital, utcnow
from shared.errors import GoldenhourError, NotFound
from shared.messages import Position

logger = logging.getLogger(__name__)


def _not_future(at: datetime | None) -> datetime:
    """A report's time, but never later than now: one report from a device with
    a wrong clock must not make every later report look stale."""
    now = utcnow()
    return now if at is None or at > now else at


class CapacityError(GoldenhourError):
    """A capacity report the registry contradicts (more free beds than the ER has)."""


class LiveState:
    """Keeps the latest capacity per ER and the latest position per ambulance."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._positions: dict[str, tuple[float, float, datetime]] = {}

    def set_capacity(self, hospital_id: str, *, er_beds_free: int, icu_beds_free: int,
                     accepting: bool, at: datetime | None = None,
                     source: Literal["mqtt", "console"] = "mqtt") -> bool:
        """Store a capacity report unless a newer one is already stored.

        Raises:
            NotFound: the hospital is not in the registry.
            CapacityError: more free beds than the registry gives the ER (nothing is stored).
        """
        at = _not_future(at)
        with session_scope(self._engine) as session:
            hospital = session.get(Hospital, hospital_id)
            if hospital is None:
                raise NotFound(f"no hospital {hospital_id} in the registry")
            for what, free, beds in (("er_beds_free", er_beds_free, hospital.er_beds),
                                     ("icu_beds_free", icu_beds_free, hospital.icu_beds)):
                if free > beds:
                    raise CapacityError(f"{what} {free} is more than the {beds} "
                                        f"{what.split('_')[0].upper()} beds of {hospital_id} "
                                        "in the registry")
            if hospital.capacity_at and hospital.capacity_at > at:
                return False
            hospital.er_beds_free, hospital.icu_beds_free = er_beds_free, icu_beds_free
            hospital.accepting, hospital.capacity_at = accepting, at
            hospital.capacity_source = source
            session.add(hospital)
        logger.info("capacity updated", extra={"hospital_id": hospital_id, "source": source,
                                               "er_beds_free": er_beds_free,
                                               "accepting": accepting})
        return True

    def ambulance_status(self, ambulance_id: str, online: bool, at: datetime) -> None:
        """Record an ambulance's online/offline status."""
        at = _not_future(at)
        with session_scope(self._engine) as session:
            ambulance = session.get(Ambulance, ambulance_id) or Ambulance(id=ambulance_id)
            if ambulance.status_at and ambulance.status_at > at:
                return
            ambulance.online, ambulance.status_at = online, at
            session.add(ambulance)
        logger.info("ambulance status", extra={"ambulance_id": ambulance_id,
                                               "state": "online" if online else "offline"})

    def ambulance_position(self, ambulance_id: str, position: Position, at: datetime) -> None:
        """Note the latest position; :meth:`flush_positions` stores it."""
        self.note_position(ambulance_id, position.lat, position.lon, at)

    def note_position(self, ambulance_id: str, lat: float, lon: float, at: datetime) -> bool:
        """Hold the report if it is newer than the one held. Returns False when a
        report was discarded: this one (older than the one held) or the one held
        (replaced before it was stored).

        Thousands of ambulances report every few seconds and only the latest
        report matters, so reports are coalesced in memory and written in one
        transaction per flush instead of one each.
        """
        at = _not_future(at)
        with self._lock:
            current = self._positions.get(ambulance_id)
            if current is None or at > current[2]:
                self._positions[ambulance_id] = (lat, lon, at)
                return current is None
        return False

    def pending_positions(self) -> int:
        """How many ambulances have a report held and not yet stored."""
        with self._lock:
            return len(self._positions)

    def flush_positions(self) -> int:
        """Store the noted positions newer than the stored ones; returns how many."""
        with self._lock:
            pending, self._positions = self._positions, {}
        if not pending:
            return 0
        rows = [{"id": ambulance_id, "lat": lat, "lon": lon, "position_at": at, "online": False}
                for ambulance_id, (lat, lon, at) in sorted(pending.items())]
        try:
            with session_scope(self._engine) as session:
                session.execute(self._upsert(session.get_bind().dialect.name), rows)
        except Exception:
            with self._lock:  # hold them again, unless a newer report came meanwhile
                for ambulance_id, held in pending.items():
                    current = self._positions.get(ambulance_id)
                    if current is None or current[2] < held[2]:
                        self._positions[ambulance_id] = held
            raise
        return len(pending)

    @staticmethod
    def _upsert(dialect: str) -> Any:
        """One row's upsert, executed for many rows at once (a multi-row VALUES
        statement would be compiled afresh for every batch size)."""
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(Ambulance)
        table = Ambulance.__table__  # type: ignore[attr-defined]
        return statement.on_conflict_do_update(
            index_elements=["id"],
            set_={"lat": statement.excluded.lat, "lon": statement.excluded.lon,
                  "position_at": statement.excluded.position_at},
            where=or_(table.c.position_at.is_(None),
                      table.c.position_at < statement.excluded.position_at),
        )
