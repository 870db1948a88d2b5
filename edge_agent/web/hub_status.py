"""The hub's state for the crew page, from the retained ``hub/{hub_id}/status``.

Each hub worker says online when it connects; the broker publishes its
retained last will, offline, when it vanishes. The crew page says "hub
online" while at least one worker is, "hub offline" once every worker it has
heard of is offline (cases still wait safely in the outbox), and "hub
unknown" before it has heard any (or while the ambulance's own link is down:
then it cannot know).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared import topics
from shared.mqtt import Messenger

HubState = Literal["online", "offline", "unknown"]


@dataclass(frozen=True)
class HubView:
    """What the crew page shows about the hub."""

    state: HubState
    online: int
    """Workers that said online."""
    known: int
    """Workers heard of at all."""


class HubStatus:
    """The latest status of every hub worker heard of."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, tuple[bool, datetime]] = {}

    def attach(self, messenger: Messenger) -> HubStatus:
        """Subscribe to every worker's status through the agent's connection."""
        messenger.on(topics.HUB_STATUS, self.receive)
        return self

    def receive(self, envelope: Any, ids: dict[str, str]) -> None:
        """An envelope handler of ``hub/+/status``. The latest status heard wins,
        whatever its ``sent_at``: a worker builds its online status and offline
        will together, so after a reconnect its "online" is older than the will."""
        with self._lock:
            self._workers[ids["hub_id"]] = (envelope.payload.state == "online", envelope.sent_at)

    def view(self, link_up: bool = True) -> HubView:
        """The hub's state as the crew page shows it."""
        with self._lock:
            states = [online for online, _ in self._workers.values()]
        online = sum(states)
        if not link_up or not states:
            return HubView("unknown", online, len(states))
        return HubView("online" if online else "offline", online, len(states))
