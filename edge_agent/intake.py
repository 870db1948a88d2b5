"""The edge's image intake, reported to the hub: per model, how many X-rays were
diagnosed and how many were refused, as not a chest radiograph or as an
unusable file.

:class:`IntakeTally` keeps cumulative counts in a JSON file in the edge's state
folder, so a restart does not reset them; :class:`IntakeReporter` publishes
them, retained, on ``ambulance/{id}/intake`` (``IntakeV1``) once after the
agent starts and whenever they change (at most every ``min_gap_s``), retrying
until the broker acknowledges. The hub keeps the latest counts per ambulance
and model and computes the refusal rate (docs/field-performance.md).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from shared import topics
from shared.background import BackgroundLoop
from shared.errors import InputImageError, MessagingError, NotChestRadiographError, NotFrontalViewError
from shared.messages import IntakeV1, ModelIntake
from shared.messages.payloads import MAX_COUNT
from shared.mqtt import Messenger

logger = logging.getLogger(__name__)

MAX_MODELS = 32
"""Models kept in the tally (the most recently used); the message allows no more."""
OUTCOMES = ("diagnosed", "refused_not_chest", "refused_unreadable")
Outcome = Literal["diagnosed", "refused_not_chest", "refused_unreadable"]


def refusal_outcome(error: InputImageError) -> Outcome:
    """How a refused image counts: not a frontal chest radiograph (the
    out-of-distribution guard, another body part or modality, a lateral or turned
    view), or an unusable file (anything else: corrupt, unsupported, blank, ...)."""
    if isinstance(error, NotChestRadiographError | NotFrontalViewError):
        return "refused_not_chest"
    return "refused_unreadable"


class IntakeTally:
    """Cumulative intake counts per (model name, version), persisted at ``path``.

    An unreadable file is kept aside (``<name>.bad-<time>``) and counting starts
    again from zero, with a warning."""

    def __init__(self, path: Path, max_models: int = MAX_MODELS) -> None:
        self.path = path
        self._max_models = max_models
        self._lock = threading.Lock()
        self._changes = 0
        self._since, self._models = self._load()

    @property
    def changes(self) -> int:
        """Counts recorded since this tally was opened (the reporter's change marker)."""
        with self._lock:
            return self._changes

    def count(self, model_name: str, model_version: str, outcome: Outcome) -> None:
        """Count one image of ``outcome`` for this model and save the tally."""
        with self._lock:
            key = f"{model_name}\t{model_version}"
            row = self._models.pop(key, None) or {name: 0 for name in OUTCOMES}
            row[outcome] = int(row.get(outcome, 0)) + 1
            self._models[key] = row  # most recently used last
            while len(self._models) > self._max_models:
                self._models.pop(next(iter(self._models)))
            self._changes += 1
            self._save()

    def snapshot(self) -> IntakeV1:
        """The counts as the intake message carries them."""
        with self._lock:
            models = []
            for key, row in self._models.items():
                name, version = key.split("\t", 1)
                models.append(ModelIntake(model_name=name[:64], model_version=version[:32],
                                          **{o: min(int(row.get(o, 0)), MAX_COUNT)
                                             for o in OUTCOMES}))
            return IntakeV1(since=self._since, models=models)

    def _load(self) -> tuple[datetime, dict[str, dict[str, int]]]:
        if not self.path.exists():
            return datetime.now(UTC), {}
        try:
            data = json.loads(self.path.read_text())
            since = datetime.fromisoformat(data["since"])
            if since.tzinfo is None:
                raise ValueError("since has no time zone")
            models = {str(key): {o: int(row.get(o, 0)) for o in OUTCOMES}
                      for key, row in data["models"].items() if "\t" in str(key)}
            return since, models
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            kept: Path | None = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            try:
                self.path.replace(kept)  # type: ignore[arg-type]
            except OSError:
                kept = None
            logger.warning("intake counts unreadable; kept aside, counting from zero",
                           extra={"path": str(self.path), "kept": str(kept),
                                  "error": str(exc)[:300]})
            return datetime.now(UTC), {}

    def _save(self) -> None:
        # A full or read-only disk must not fail a diagnosis: the counts stay in memory.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.tmp")
            temporary.write_text(json.dumps({"since": self._since.isoformat(),
                                             "models": self._models}))
            os.replace(temporary, self.path)
        except OSError as exc:
            logger.warning("intake counts not saved", extra={"path": str(self.path),
                                                             "error": str(exc)[:300]})


class IntakeReporter:
    """Publishes the tally's counts, retained, when they change."""

    def __init__(self, messenger: Messenger, ambulance_id: str, tally: IntakeTally,
                 connected: Callable[[], bool], *, min_gap_s: float = 2.0,
                 tick_s: float = 0.5) -> None:
        self._messenger = messenger
        self._ambulance_id = ambulance_id
        self._tally = tally
        self._connected = connected
        self._min_gap_s = min_gap_s
        self._sent_changes: int | None = None  # None: nothing sent since the start
        self._sent_at = float("-inf")
        self._loop = BackgroundLoop("edge-intake", self._round, tick_s, join_timeout_s=5)
        self.published = 0
        """Intake messages the broker acknowledged."""

    def start(self) -> None:
        """Report in a background thread until :meth:`stop`."""
        self._sent_changes, self._sent_at = None, float("-inf")
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _round(self) -> None:
        if not self._connected():
            return
        now = time.monotonic()
        changes = self._tally.changes
        if changes == self._sent_changes or now - self._sent_at < self._min_gap_s:
            return
        if self._publish():
            self._sent_changes, self._sent_at = changes, now

    def _publish(self) -> bool:
        try:
            self._messenger.send(topics.AMBULANCE_INTAKE, self._tally.snapshot(),
                                 ambulance_id=self._ambulance_id, timeout=5.0)
        except MessagingError as exc:
            logger.debug("intake counts not sent", extra={"error": str(exc)})
            return False
        self.published += 1
        return True
