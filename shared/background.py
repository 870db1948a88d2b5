"""A step run again and again in a daemon thread until stopped: the one
background loop of the edge and the hub (positions, intake counts, model
updates, the outbox sender, housekeeping, PACS pushes)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from shared.errors import GoldenhourError

logger = logging.getLogger(__name__)

Step = Callable[[], float | None]
"""One round of work; returns the seconds until the next round, or None for the loop's interval."""


class BackgroundLoop:
    """Runs ``step`` every ``interval_s`` (the first time after ``first_delay_s``)
    in a daemon thread named ``name``, until :meth:`stop`.

    A step that raises is logged (a :class:`GoldenhourError` as a warning
    without the traceback) and the loop goes on: one bad round must not end it.
    """

    def __init__(self, name: str, step: Step, interval_s: float, *,
                 first_delay_s: float | None = None, join_timeout_s: float = 10.0,
                 failure: str | None = None) -> None:
        self.name = name
        self._step = step
        self.interval_s = interval_s
        self._first_delay_s = interval_s if first_delay_s is None else first_delay_s
        self._join_timeout_s = join_timeout_s
        self._failure = failure or f"{name} failed"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (a long step checks it to end early)."""
        return self._stop.is_set()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the latest :meth:`start` (None before the first)."""
        return self._thread

    def start(self) -> None:
        """Start the thread (a loop stopped before may be started again)."""
        self._stop.clear()
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next round now rather than at the end of the wait."""
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop after the round in progress; returns False when the thread is
        still running after ``timeout_s`` (default: the loop's ``join_timeout_s``)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout=self._join_timeout_s if timeout_s is None else timeout_s)
        if thread.is_alive():
            logger.warning("background loop still running at shutdown", extra={"loop": self.name})
            return False
        return True

    def _run(self) -> None:
        delay = self._first_delay_s
        while True:
            self._wake.wait(delay)
            if self._stop.is_set():
                return
            self._wake.clear()
            delay = self.interval_s
            try:
                after = self._step()
            except GoldenhourError as exc:
                logger.warning(self._failure, extra={"error": str(exc)})
            except Exception:
                logger.exception(self._failure)
            else:
                if after is not None:
                    delay = after
