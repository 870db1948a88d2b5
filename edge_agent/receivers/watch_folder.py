"""A watched folder: files dropped or exported into it are diagnosed once each.

A worker thread scans the folder; watchdog's file-system events (inotify on
Linux) wake it as soon as something changes, and when watchdog is missing or
cannot watch (a network share, no inotify watches left) plain polling does
the same, only later. A file is handed to ``on_image(path)`` once its size and
modification time have stayed the same for ``stable_s`` seconds, so a file
still being copied is not read half-written (writers that can should write
under a temporary name and rename; see ``docs/edge-ingest.md``).

Hidden files (``.name``) and temporary ones (``*.part``, ``*.tmp``, ``*~``,
...) are ignored. After the callback the file moves to ``done/``; when the
callback raises it moves to ``failed/`` with ``<name>.error.txt`` beside it
saying why, so nothing is lost. Files already in the folder at start-up are
processed too.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_agent.receivers.dicom_scp import OnImage
from shared.background import BackgroundLoop
from shared.errors import ConfigurationError

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp", ".lock",
                      "~", ".error.txt")
"""Names ending so are never processed (downloads and copies in progress, editors' files)."""
DONE = "done"
FAILED = "failed"


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    stable_since: float


class WatchFolder:
    """Hands each complete new file in ``folder`` to ``on_image``; see the module doc.

    Args:
        folder: the watched folder (created when missing, with ``done/`` and ``failed/``).
        on_image: called with the file's path in ``folder``; must not keep the
            path after returning (the file is then moved).
        stable_s: how long size and modification time must stay unchanged.
        poll_s: how often the folder is scanned while files are settling, and
            without watchdog; with watchdog an idle folder is rescanned every
            ``idle_poll_s`` only, as a safety net for missed events.
        use_watchdog: False forces polling.
    """

    def __init__(self, folder: Path, on_image: OnImage, *, stable_s: float = 2.0, poll_s: float = 0.5,
                 idle_poll_s: float = 10.0, use_watchdog: bool = True) -> None:
        if stable_s < 0 or poll_s <= 0 or idle_poll_s <= 0:
            raise ConfigurationError("watch folder timings must be positive")
        self.folder = Path(folder)
        self.on_image = on_image
        self.stable_s = stable_s
        self.poll_s = poll_s
        self.idle_poll_s = idle_poll_s
        self.use_watchdog = use_watchdog
        self._loop: BackgroundLoop | None = None
        self._observer: Any = None
        self._seen: dict[str, _Seen] = {}
        self._stuck: dict[str, tuple[int, int]] = {}
        """Files processed but not movable: skipped until they change."""
        self.processed = 0
        self.failed = 0

    @property
    def done_folder(self) -> Path:
        return self.folder / DONE

    @property
    def failed_folder(self) -> Path:
        return self.folder / FAILED

    @property
    def watching(self) -> str:
        """``watchdog`` or ``polling``: how changes are noticed now."""
        return "watchdog" if self._observer is not None else "polling"

    def start(self) -> None:
        """Start watching in a background thread; returns at once.

        Raises:
            ConfigurationError: the folders cannot be created.
        """
        if self._loop is not None and not self._loop.stopping:
            return
        try:
            for path in (self.folder, self.done_folder, self.failed_folder):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the watched folder {self.folder}: {exc}") from exc
        self._loop = BackgroundLoop(f"watch-folder:{self.folder.name}", self._round, self.poll_s,
                                    first_delay_s=0.0)
        if self.use_watchdog:
            self._observer = self._start_observer(self._loop.wake)
        self._loop.start()
        logger.info("watching folder", extra={"folder": str(self.folder), "mode": self.watching})

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching; a file being processed finishes first (up to ``timeout``)."""
        if self._loop is not None:
            self._loop.stop(timeout_s=timeout)  # a scan in progress ends after its file
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:  # stopping must not fail
                logger.debug("watchdog observer did not stop cleanly", exc_info=True)

    def __enter__(self) -> WatchFolder:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _start_observer(self, wake: Callable[[], None]) -> Any:
        """A watchdog observer that wakes the scanner, or None (polling)."""
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            logger.warning("watchdog is not installed: polling the watched folder")
            return None
        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake()

        try:
            observer = Observer()
            observer.schedule(Wake(), str(self.folder), recursive=False)
            observer.daemon = True
            observer.start()
        except Exception as exc:  # inotify limits, unsupported file systems
            logger.warning("cannot watch %s for events (%s): polling instead", self.folder, exc)
            return None
        return observer

    def _round(self) -> float:
        """One scan; returns the wait before the next (short while files settle or
        without watchdog events)."""
        try:
            pending = self.scan()
        except Exception:  # the folder vanished, a permission changed: keep trying
            logger.exception("watched folder scan failed", extra={"folder": str(self.folder)})
            pending = True
        return self.poll_s if pending or self._observer is None else self.idle_poll_s

    def scan(self, now: float | None = None) -> bool:
        """Look at the folder once; process the files that are complete.

        Returns whether some files are still settling.
        """
        now = time.monotonic() if now is None else now
        present: set[str] = set()
        pending = False
        with os.scandir(self.folder) as entries:
            candidates = sorted(
                (entry for entry in entries if _wanted(entry.name) and entry.is_file(follow_symlinks=False)),
                key=lambda entry: entry.name)
        for entry in candidates:
            if self._loop is not None and self._loop.stopping:
                return True
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            name = entry.name
            present.add(name)
            if self._stuck.get(name) == (stat.st_size, stat.st_mtime_ns):
                continue
            seen = self._seen.get(name)
            if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                self._seen[name] = _Seen(stat.st_size, stat.st_mtime_ns, now)
                pending = True
                continue
            if now - seen.stable_since < self.stable_s or stat.st_size == 0:
                pending = True
                continue
            del self._seen[name]
            self._process(Path(entry.path), (stat.st_size, stat.st_mtime_ns))
        for name in set(self._seen) - present:
            del self._seen[name]
        for name in set(self._stuck) - present:
            del self._stuck[name]
        return pending

    def _process(self, path: Path, signature: tuple[int, int]) -> None:
        logger.info("watched folder: new file", extra={"file": path.name})
        try:
            self.on_image(path)
        except Exception as exc:
            logger.warning("watched folder: file failed: %s", exc, extra={"file": path.name})
            self._move(path, self.failed_folder, signature, note=f"{type(exc).__name__}: {exc}\n\n"
                       + "".join(traceback.format_exception(exc)))
            self.failed += 1  # counted once the file and its note are in place
            return
        self._move(path, self.done_folder, signature)
        self.processed += 1

    def _move(self, path: Path, folder: Path, signature: tuple[int, int], note: str | None = None
              ) -> Path | None:
        """Move ``path`` into ``folder`` under a free name, its ``note`` (if any) written
        beside it first as ``<name>.error.txt``, so whoever sees the file finds its note;
        None when it cannot."""
        if not path.exists():  # the callback moved or deleted it itself
            return None
        target = folder / path.name
        counter = 1
        while target.exists():
            target = folder / f"{path.stem}-{counter}{path.suffix}"
            counter += 1
        if note is not None:
            _write_note(target.with_name(target.name + ".error.txt"), note)
        try:
            os.replace(path, target)
        except OSError:
            logger.exception("cannot move a processed file; it stays and is skipped",
                             extra={"file": path.name})
            if note is not None:
                target.with_name(target.name + ".error.txt").unlink(missing_ok=True)
            self._stuck[path.name] = signature
            return None
        return target


def _write_note(note: Path, text: str) -> None:
    """Write whole, then rename: a reader never sees half a note."""
    partial = note.with_name("." + note.name + ".tmp")  # hidden: never taken for an image
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, note)
    except OSError:
        logger.exception("cannot write the error note", extra={"file": note.name})


def _wanted(name: str) -> bool:
    lower = name.lower()
    return not name.startswith(".") and not lower.endswith(TEMPORARY_SUFFIXES) \
        and not lower.startswith("~$") and lower not in ("thumbs.db", "desktop.ini")
