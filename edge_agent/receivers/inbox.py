"""Where the DICOM receiver keeps what the X-ray unit sent, and for how long.

A received object carries the patient's name and IDs, so the inbox is private
and short-lived (issue 20, defect 5):

* the folder is 0700 and every file 0600, written atomically;
* an object whose case is in the outbox (which holds what must be delivered)
  is deleted at once;
* a refused object moves to ``refused/`` with ``<name>.error.txt`` beside it,
  for whoever looks into the refusal, and is deleted after ``retention_s`` or
  when the refused ones pass ``max_bytes`` (oldest first);
* at start-up, temporary files and anything older than the retention go.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

from shared.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
REFUSED = "refused"
NOTE_SUFFIX = ".error.txt"


class DicomInbox:
    """The receiver's private folder (see the module doc)."""

    def __init__(self, folder: Path, *, retention_s: float = DEFAULT_RETENTION_S,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.refused = self.folder / REFUSED
        self.retention_s = retention_s
        self.max_bytes = max_bytes

    def prepare(self) -> None:
        """Create the folders owner-only (tightening existing ones) and clean up.

        Raises:
            ConfigurationError: the folder cannot be created.
        """
        try:
            for folder in (self.folder, self.refused):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(folder, 0o700)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the DICOM inbox {self.folder}: {exc}") from exc
        self.sweep(startup=True)

    def write(self, name: str, data: bytes) -> Path:
        """Write ``data`` as ``name`` (0600), atomically: a hidden temporary file, fsynced, renamed."""
        final = self.folder / name
        temporary = self.folder / f".{name}.{uuid.uuid4().hex}.part"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return final

    def done(self, path: Path) -> None:
        """The object's case is in the outbox: delete it."""
        path.unlink(missing_ok=True)

    def refuse(self, path: Path, reason: str) -> None:
        """Keep a refused object with its reason, within the retention and the budget."""
        target = self.refused / path.name
        try:
            os.replace(path, target)
            fd = os.open(self.refused / (path.name + NOTE_SUFFIX),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(reason + "\n")
        except OSError:
            logger.exception("cannot keep a refused DICOM object; deleting it", extra={"file": path.name})
            path.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
        self.sweep()

    def sweep(self, *, startup: bool = False) -> int:
        """Delete refused objects past the retention or over the budget; at start-up
        also temporary files and objects left over older than the retention. Returns how many."""
        now = time.time()
        removed = 0
        if startup and self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.is_file() and (path.name.endswith(".part") or _age(path, now) > self.retention_s):
                    path.unlink(missing_ok=True)
                    removed += 1
        kept: list[tuple[float, Path, int]] = []
        if self.refused.is_dir():
            for path in self.refused.iterdir():
                if not path.is_file() or path.name.endswith(NOTE_SUFFIX):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if now - stat.st_mtime > self.retention_s:
                    removed += self._drop(path)
                else:
                    kept.append((stat.st_mtime, path, stat.st_size))
        total = sum(size for _, _, size in kept)
        for _, path, size in sorted(kept, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            removed += self._drop(path)
            total -= size
        if startup and self.refused.is_dir():  # notes whose object is gone
            for note in self.refused.glob("*" + NOTE_SUFFIX):
                if not (self.refused / note.name[:-len(NOTE_SUFFIX)]).exists():
                    note.unlink(missing_ok=True)
        if removed:
            logger.info("DICOM inbox cleaned", extra={"removed": removed})
        return removed

    def usage(self) -> tuple[int, int]:
        """(objects, bytes) held, refused ones included (notes not counted)."""
        files = [p for p in (*self.folder.glob("*.dcm"), *self.refused.glob("*.dcm")) if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    def _drop(self, path: Path) -> int:
        path.unlink(missing_ok=True)
        (path.parent / (path.name + NOTE_SUFFIX)).unlink(missing_ok=True)
        return 1


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
