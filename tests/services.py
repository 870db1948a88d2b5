"""Real services for the tests: PostgreSQL started from its binaries, and helpers.

``GOLDENHOUR_REQUIRE_SERVICES=1`` (set by the test command) turns a missing
service into a failure instead of a skip, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hospital_hub import pgserver
from shared.broker import MosquittoBroker, find_mosquitto


def require(condition: bool, reason: str) -> None:
    """Skip (or fail, when services are required) unless ``condition``."""
    if condition:
        return
    if os.environ.get("GOLDENHOUR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@contextmanager
def running_mosquitto() -> Iterator[MosquittoBroker]:
    """A real Mosquitto on a free loopback port; skipped (or failed) when not installed."""
    require(find_mosquitto() is not None, "mosquitto is not installed (apt-get install mosquitto)")
    broker = MosquittoBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the session; skipped (or failed) when not installed."""
    require(pgserver.postgres_bin() is not None,
            "PostgreSQL is not installed (Debian: apt-get install postgresql)")
    with pgserver.postgres_server() as url:
        yield url


create_database = pgserver.create_database
drop_database = pgserver.drop_database


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
