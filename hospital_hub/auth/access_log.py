"""The access log: who saw or changed which case, and every sign-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Engine

from hospital_hub.auth.users import Principal
from hospital_hub.auth_models import AccessLog
from hospital_hub.db import session_scope


class AccessLogger:
    """Writes :class:`AccessLog` rows: every change, and views at most once per
    ``view_interval_s`` per (user, case, what)."""

    def __init__(self, engine: Engine, view_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self.view_interval_s = view_interval_s
        self._clock = clock
        self._last_view: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def _due(self, username: str, case_ids: Iterable[str], what: str) -> list[str]:
        now = self._clock()
        due = []
        with self._lock:
            if len(self._last_view) > 200_000:
                self._last_view = {k: t for k, t in self._last_view.items()
                                   if now - t < self.view_interval_s}
            for case_id in dict.fromkeys(case_ids):
                key = (username, case_id, what)
                last = self._last_view.get(key)
                if last is None or now - last >= self.view_interval_s:
                    self._last_view[key] = now
                    due.append(case_id)
        return due

    def viewed(self, who: Principal, what: str, case_ids: Iterable[str],
               client: str | None = None, hospital_id: str | None = None) -> None:
        """Record that ``who`` saw these cases through ``what``."""
        due = self._due(who.username, case_ids, what)
        if due:
            self._write([AccessLog(username=who.username, role=who.kind, action="view", what=what,
                                   case_id=case_id, hospital_id=hospital_id, client=client)
                         for case_id in due])

    def changed(self, who: Principal, what: str, *, case_id: str | None = None,
                hospital_id: str | None = None, client: str | None = None,
                **detail: Any) -> None:
        """Record a change ``who`` made (``detail``: what was done, never patient data)."""
        self._write([AccessLog(username=who.username, role=who.kind, action="change", what=what,
                               case_id=case_id, hospital_id=hospital_id, client=client,
                               detail=detail)])

    def event(self, username: str, role: str, action: str, client: str | None) -> None:
        """Record a sign-in, a failed one, or a sign-out."""
        self._write([AccessLog(username=username[:64], role=role, action=action, what="login",
                               client=client)])

    def _write(self, rows: list[AccessLog]) -> None:
        with session_scope(self._engine) as session:
            session.add_all(rows)
