"""What the edge's model updater has done with releases: the outcome of each
poll (:class:`UpdateResult`) and the installed and rejected releases kept
across restarts (:class:`UpdateState`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from shared.manifest import ModelEntry
from shared.signing import Release

logger = logging.getLogger(__name__)

Outcome = Literal["no-offer", "current", "skipped", "installed", "passed", "rejected", "known-rejected",
                  "rolled-back", "retry"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class UpdateResult:
    """What a poll (or a probation) did with the release on offer."""

    outcome: Outcome
    detail: str = ""
    release: str | None = None
    """``name@version`` of the release's entries."""
    digest: str | None = None
    at: str = field(default_factory=_now)


class UpdateState:
    """Installed and rejected releases, kept in a small JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected: dict[str, dict[str, str]] = {}
        self.installed: list[dict[str, str]] = []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.rejected, self.installed = dict(data["rejected"]), list(data["installed"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("model update state unreadable: starting afresh", extra={"path": str(path),
                                                                                   "error": str(exc)})

    def reject(self, release: Release, reason: str) -> None:
        """Never try ``release`` again."""
        self.rejected[release.digest] = {"release": release.label, "reason": reason[:1000], "at": _now()}
        self._save()

    def install(self, release: Release, entries: list[ModelEntry]) -> None:
        """Remember that this updater installed ``entries``."""
        self.installed += [{"key": e.key, "name": e.name, "version": e.version, "digest": release.digest,
                            "at": _now()} for e in entries]
        self._save()

    def forget(self, keys: set[str]) -> None:
        """Drop installed entries once their files are gone."""
        self.installed = [row for row in self.installed if row["key"] not in keys]
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"rejected": self.rejected, "installed": self.installed}, indent=2),
                       encoding="utf-8")
        os.replace(tmp, self.path)
