"""Identifiers that appear in topics: ambulances, hospitals and cases."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated

from pydantic import StringConstraints

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Safe in an MQTT topic level: no ``/``, ``+``, ``#`` or ``$``, at most 64 characters."""

_ID_RE = re.compile(ID_PATTERN)

Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""A validated identifier for use in pydantic models."""


def is_valid_id(value: str) -> bool:
    """Return whether ``value`` can be used as one topic level."""
    return bool(_ID_RE.fullmatch(value))


def new_case_id(now: datetime | None = None) -> str:
    """Mint a case id that sorts by time and is unique without coordination.

    The form is ``YYYYMMDDTHHMMSSZ-<8 hex>``, readable on a phone call.
    """
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"
