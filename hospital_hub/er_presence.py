"""Which ERs are online, from their retained ``er/{hospital_id}/status``.

An ER console or gateway says online when it connects; the broker publishes
its last will, offline, when it vanishes. An ER that went offline is ranked
out of new offers at once (it could not see them), and after
``er_offline_grace_s`` its open offers pass to the next ERs (the grace covers
a quick reconnect). An ER that never published a status (a web-console-only
ER) counts as available: only an explicit offline takes an ER out.

Every worker hears every status (retained, not shared), so each keeps this in
memory; a restarted worker gets the current statuses again on subscribing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErState:
    """The latest status of one ER as this worker heard it."""

    online: bool
    at: datetime
    """The status's own time (its sender's clock)."""
    heard: float
    """``time.monotonic()`` when this worker heard it."""


class ErPresence:
    """The online state of every ER that has published one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ErState] = {}

    def update(self, hospital_id: str, online: bool, at: datetime) -> bool:
        """Note a status; returns whether the state changed.

        The latest status heard wins, whatever its ``sent_at``: a client builds
        its online status and its offline will together, once, so after a
        reconnect its "online" is older than the will it replaces. One
        connection delivers one topic's messages in order, and a retained
        status is the latest one.
        """
        with self._lock:
            current = self._states.get(hospital_id)
            changed = current is None or current.online != online
            # the grace runs from when it went offline, not from a repeat of the news
            heard = time.monotonic() if changed or current is None else current.heard
            self._states[hospital_id] = ErState(online, at, heard)
        if changed:
            log = logger.warning if not online else logger.info
            log("ER online" if online else "ER offline: no new offers",
                extra={"hospital_id": hospital_id})
        return changed

    def offline(self) -> set[str]:
        """ERs whose latest status is offline (ranked out of new offers)."""
        with self._lock:
            return {h for h, state in self._states.items() if not state.online}

    def offline_for(self, grace_s: float) -> set[str]:
        """ERs offline for at least ``grace_s`` (their open offers pass on)."""
        now = time.monotonic()
        with self._lock:
            return {h for h, state in self._states.items()
                    if not state.online and now - state.heard >= grace_s}

    def snapshot(self) -> dict[str, ErState]:
        with self._lock:
            return dict(self._states)
