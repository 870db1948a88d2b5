"""Structured logging for every service: one event per line, fields as keys.

Code logs with ``logger.info("event name", extra={"case_id": ...})``; this
formatter renders the extra fields either as JSON (for log collectors) or as
``key=value`` after the message (for people watching a terminal).

Code that handles one case wraps the work in :func:`case_context`; every
record logged inside it, by any module, carries that ``case_id`` (added by
:class:`CaseIdFilter`, which :func:`configure_logging` installs), so a log
collector can follow one case across the edge and the hub.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from shared.settings import LogFormat

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message"}

_CASE_ID: ContextVar[str | None] = ContextVar("goldenhour_case_id", default=None)


@contextmanager
def case_context(case_id: str | None) -> Iterator[None]:
    """Records logged inside this block (in this thread or task) carry ``case_id``."""
    token = _CASE_ID.set(case_id)
    try:
        yield
    finally:
        _CASE_ID.reset(token)


def current_case_id() -> str | None:
    """The case being handled by this thread or task, if any."""
    return _CASE_ID.get()


class CaseIdFilter(logging.Filter):
    """Adds the current :func:`case_context` case id to records that lack one
    (an explicit ``extra={"case_id": ...}`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        case_id = _CASE_ID.get()
        if case_id is not None and getattr(record, "case_id", None) is None:
            record.case_id = case_id
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class KeyValueFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL logger: event key=value ...`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(level: str = "INFO", fmt: LogFormat = "text", service: str = "") -> None:
    """Send all records to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(CaseIdFilter())
    if service:
        handler.addFilter(_ServiceFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("amqtt", "transitions", "uvicorn.access", "httpx", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True
