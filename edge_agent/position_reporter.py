"""How often the ambulance reports its position: often while a case is under
way, rarely otherwise.

The hub keeps only an ambulance's newest position; it needs it fresh while a
case is being offered (ranking starts from it) and while the ambulance drives
to the ER (the ER's live ETA), and hardly at all between cases. So the edge
reports every ``position_interval_active_s`` (1 s) while a case is active and
every ``position_interval_s`` (20 s) otherwise: a fleet of 10,000 ambulances
with a tenth of them on a case sends about 1,500 reports a second, not 10,000.

A case is active from the moment it is queued until its handover or
cancellation is queued, the hub answers that no ER is available, or
``position_active_for_s`` has passed since it was queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from edge_agent.settings import EdgeSettings

if TYPE_CHECKING:
    from edge_agent.agent import CaseRecord

FINAL_STATES = frozenset({"cancelled", "no_er_available"})
ENDING_UPDATES = ("update:handover", "update:cancel")
"""Case documents the agent keeps when the crew queues these updates."""


class PositionPace:
    """The interval to the next position report."""

    def __init__(self, settings: EdgeSettings, cases: Callable[[], Iterable[CaseRecord]],
                 case_docs: Callable[[str], dict[str, str]]) -> None:
        self.active_s = settings.position_interval_active_s
        self.idle_s = settings.position_interval_s
        self.active_for_s = settings.position_active_for_s
        self._cases = cases
        self._case_docs = case_docs
        self._ended: set[str] = set()

    def active(self) -> bool:
        """Whether a case is under way (see the module's docstring)."""
        now = time.monotonic()
        for record in self._cases():
            case_id = record.case_id
            if case_id in self._ended or now - record.queued_at > self.active_for_s:
                continue
            docs = self._case_docs(case_id)
            if _state(record) in FINAL_STATES or any(kind in docs for kind in ENDING_UPDATES):
                self._ended.add(case_id)
                continue
            return True
        return False

    def interval(self) -> float:
        """Seconds until the next report."""
        return self.active_s if self.active() else self.idle_s


def _state(record: CaseRecord) -> str | None:
    """The hub's latest word on the case: its status, else its decision."""
    if record.status is not None:
        return str(record.status.state)
    return str(record.decision.status) if record.decision is not None else None
