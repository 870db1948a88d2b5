"""The dispatch alerts heard on the broker, for the dispatch board.

The hub publishes ``dispatch/alert/{case_id}`` (a case no ER accepted, an
ambulance's AI drifting); every hub process that serves the board subscribes
to it and keeps the latest alerts in memory, newest last, so the board shows
them as they come (``/api/dispatch/alerts`` and its event stream). Alerts are
events, not retained: a process that starts later shows those heard since.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from shared.messages import DispatchAlertV1, Envelope

KEEP = 100
"""Alerts kept in memory."""


@dataclass(frozen=True)
class Alert:
    """One dispatch alert as the board shows it."""

    seq: int
    """Order of arrival in this process (the board asks for those after the last it has)."""
    message_id: str
    case_id: str | None
    kind: str
    ambulance_id: str
    triage_level: int
    message: str
    sent_at: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


class AlertFeed:
    """The latest alerts, each once (a redelivered message is not shown twice)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lock = threading.Lock()
        self._alerts: deque[Alert] = deque(maxlen=keep)
        self._ids: set[uuid.UUID] = set()
        self._seq = 0

    def receive(self, envelope: Envelope[Any], ids: dict[str, str]) -> None:
        """The handler of ``dispatch/alert/+`` (an envelope handler)."""
        alert: DispatchAlertV1 = envelope.payload
        with self._lock:
            if envelope.message_id in self._ids:
                return
            self._seq += 1
            if len(self._alerts) == self._alerts.maxlen:
                self._ids.discard(uuid.UUID(self._alerts[0].message_id))
            self._ids.add(envelope.message_id)
            self._alerts.append(Alert(
                seq=self._seq, message_id=str(envelope.message_id),
                case_id=envelope.case_id or ids.get("case_id"), kind=alert.kind,
                ambulance_id=alert.ambulance_id, triage_level=alert.triage_level,
                message=alert.message, sent_at=envelope.sent_at.isoformat()))

    def after(self, seq: int = 0) -> list[Alert]:
        """The alerts that arrived after ``seq``, oldest first."""
        with self._lock:
            return [a for a in self._alerts if a.seq > seq]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq
