"""Is this worker overloaded? And what waits while it is.

Case messages (diagnoses, decisions, updates) are timed as they are handled:
how busy the handler thread was over the last seconds, and how old each
message was when its handling began (from its ``sent_at``, so a sender's wrong
clock shows up here too; the median over the window resists one such sender).
A worker is overloaded when its handler is busy nearly all the time, or when
messages wait longer than ``overload_lag_s`` while it is at least half busy.

While overloaded, what can wait does: capacity refreshes are held (the newest
per ER wins) and applied once the load falls or at the latest after
:data:`CAPACITY_MAX_HOLD_S`; the position lane lets its subscription go and
writes what it holds less often; the board polls for alerts less often;
readiness and the metrics say so. Cases and decisions are never held back or
dropped.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.messages import Envelope

logger = logging.getLogger(__name__)

WINDOW_S = 2.0
"""The figures describe the last this many seconds."""
BUSY_OVERLOADED = 0.9
BUSY_WITH_LAG = 0.5
CAPACITY_MAX_HOLD_S = 10.0
"""A held capacity refresh is applied after this long even under overload."""

Handler = Callable[[Envelope[Any], dict[str, str]], None]


class LoadMonitor:
    """Busy time and message age of one worker's case handling."""

    def __init__(self, lag_limit_s: float, queue_depth: Callable[[], int] = lambda: 0) -> None:
        self.lag_limit_s = lag_limit_s
        self.queue_depth = queue_depth
        """Messages received and waiting for the handler thread (0 if unknown)."""
        self._lock = threading.Lock()
        self._busy: deque[tuple[float, float]] = deque()
        """(end, seconds) of each handling in the window."""
        self._lags: deque[tuple[float, float]] = deque()
        self._running_since: float | None = None
        self.overloaded = False
        self.since: float | None = None
        """``time.monotonic()`` when the current overload began."""
        self.episodes = 0

    def track(self, handler: Handler) -> Handler:
        """Wrap a case handler so its busy time and its messages' age are counted."""

        def run(envelope: Envelope[Any], ids: dict[str, str]) -> None:
            start = time.monotonic()
            lag = max(0.0, (datetime.now(UTC) - envelope.sent_at).total_seconds())
            with self._lock:
                self._running_since = start
                self._lags.append((start, lag))
            try:
                handler(envelope, ids)
            finally:
                end = time.monotonic()
                with self._lock:
                    self._running_since = None
                    self._busy.append((end, end - start))

        return run

    def _trim(self, now: float) -> None:
        while self._busy and self._busy[0][0] < now - WINDOW_S:
            self._busy.popleft()
        while self._lags and self._lags[0][0] < now - WINDOW_S:
            self._lags.popleft()

    def figures(self) -> dict[str, float]:
        """busy (0..1), lag_s (median age at handling), lag_max_s, queue_depth."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            busy = sum(min(seconds, WINDOW_S) for _, seconds in self._busy)
            if self._running_since is not None:
                busy += min(WINDOW_S, now - self._running_since)
            lags = [lag for _, lag in self._lags]
        return {"busy": min(1.0, busy / WINDOW_S),
                "lag_s": statistics.median(lags) if lags else 0.0,
                "lag_max_s": max(lags, default=0.0),
                "queue_depth": float(self.queue_depth())}

    def update(self) -> bool:
        """Recompute the overload state (the housekeeping thread calls this)."""
        figures = self.figures()
        overloaded = figures["busy"] >= BUSY_OVERLOADED or (
            figures["lag_s"] > self.lag_limit_s and figures["busy"] >= BUSY_WITH_LAG)
        if overloaded != self.overloaded:
            self.overloaded = overloaded
            if overloaded:
                self.since = time.monotonic()
                self.episodes += 1
                logger.warning("overloaded: deferring capacity refreshes and positions",
                               extra={k: round(v, 3) for k, v in figures.items()})
            else:
                logger.info("load back to normal", extra={
                    "overloaded_s": round(time.monotonic() - (self.since or 0.0), 1)})
                self.since = None
        return overloaded


class HeldCapacity:
    """Capacity refreshes held while the worker is overloaded, newest per ER."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[float, Callable[[], None]]] = {}

    def hold(self, hospital_id: str, apply: Callable[[], None]) -> None:
        with self._lock:
            first = self._held.get(hospital_id, (time.monotonic(), apply))[0]
            self._held[hospital_id] = (first, apply)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def due(self, everything: bool) -> list[Callable[[], None]]:
        """Take the held refreshes to apply now: all, or those held too long."""
        now = time.monotonic()
        with self._lock:
            ready = [h for h, (first, _) in self._held.items()
                     if everything or now - first >= CAPACITY_MAX_HOLD_S]
            return [self._held.pop(h)[1] for h in ready]
