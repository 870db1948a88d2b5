"""Live state: ER capacity (MQTT or console) and ambulance status and positions."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from sqlalchemy.engine import Engine

from hospital_hub.db import session_scope
from hospital_hub.models import Ambulance, Hospital, utcnow
from shared.errors import NotFound
from shared.messages import Position

logger = logging.getLogger(__name__)


class LiveState:
    """Keeps the latest capacity per ER and the latest position per ambulance."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def set_capacity(self, hospital_id: str, *, er_beds_free: int, icu_beds_free: int,
                     accepting: bool, at: datetime | None = None,
                     source: Literal["mqtt", "console"] = "mqtt") -> bool:
        """Store a capacity report unless a newer one is already stored.

        Raises:
            NotFound: the hospital is not in the registry.
        """
        at = at or utcnow()
        with session_scope(self._engine) as session:
            hospital = session.get(Hospital, hospital_id)
            if hospital is None:
                raise NotFound(f"no hospital {hospital_id} in the registry")
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
        with session_scope(self._engine) as session:
            ambulance = session.get(Ambulance, ambulance_id) or Ambulance(id=ambulance_id)
            if ambulance.status_at and ambulance.status_at > at:
                return
            ambulance.online, ambulance.status_at = online, at
            session.add(ambulance)
        logger.info("ambulance status", extra={"ambulance_id": ambulance_id,
                                               "state": "online" if online else "offline"})

    def ambulance_position(self, ambulance_id: str, position: Position, at: datetime) -> None:
        """Keep the latest position per ambulance (older reports are ignored)."""
        with session_scope(self._engine) as session:
            ambulance = session.get(Ambulance, ambulance_id) or Ambulance(id=ambulance_id)
            if ambulance.position_at and ambulance.position_at >= at:
                return
            ambulance.lat, ambulance.lon, ambulance.position_at = position.lat, position.lon, at
            session.add(ambulance)
