"""The sign-in rate limit, counted in the database so that it holds across
every hub worker (and survives a restart)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import delete, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.auth_models import LoginFailure
from hospital_hub.db import session_scope

LOGIN_LOCK_KEY = 0x60_1D_10_61
"""PostgreSQL advisory lock key held while a worker counts or clears sign-in failures."""


class LoginLimiter:
    """At most ``max_failures`` failed sign-ins per (username, client address)
    and per client address in a sliding ``window_s``; then that address is
    refused until its oldest failure leaves the window. A name is never locked
    for everyone: a stranger's wrong passwords must not lock a doctor out
    (user names are predictable, ``er-<hospital id>``). Failures of one name
    from anywhere only slow its sign-ins down: past ``max_failures`` each
    attempt waits ``user_delay_s``. Rows of :class:`LoginFailure`, counted and
    cleared one transaction at a time across the hub (a PostgreSQL advisory
    lock, SQLite's write lock): a few milliseconds each, and the slow password
    check stays outside."""

    def __init__(self, engine: Engine, max_failures: int, window_s: float,
                 clock: Callable[[], float] = time.time, user_delay_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._engine = engine
        self.max_failures = max_failures
        self.window_s = window_s
        self.user_delay_s = user_delay_s
        self._clock = clock
        self._sleep = sleep

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        """The keys that lock: this name from this address, and this address."""
        return f"pair:{username.lower()}|{address}", f"addr:{address}"

    @staticmethod
    def _user_key(username: str) -> str:
        return f"user:{username.lower()}"

    @staticmethod
    def _lock(session: Session) -> None:
        """One count or clear at a time across workers (PostgreSQL; on SQLite
        the write transaction already holds the database's lock). One lock for
        every address: the purge of old rows and a success's clearing delete
        rows other addresses' transactions may delete too."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOGIN_LOCK_KEY})

    def _recent(self, session: Session, key: str, now: float) -> tuple[int, float | None]:
        """How many failures of ``key`` are in the window, and the oldest one's time."""
        count, oldest = session.exec(
            select(func.count(), func.min(LoginFailure.at))
            .where(LoginFailure.key == key, LoginFailure.at > now - self.window_s)).one()
        return int(count), oldest

    def _wait(self, session: Session, username: str, address: str, now: float) -> int | None:
        waits = []
        for key in self._keys(username, address):
            count, oldest = self._recent(session, key, now)
            if count >= self.max_failures and oldest is not None:
                waits.append(self.window_s - (now - oldest))
        return max(1, math.ceil(max(waits))) if waits else None

    def _count(self, session: Session, username: str, address: str, now: float) -> int:
        """Count a failure; returns the name's failures from every address."""
        session.execute(delete(LoginFailure).where(col(LoginFailure.at) <= now - self.window_s))
        session.add_all([LoginFailure(key=key, at=now)
                         for key in (*self._keys(username, address), self._user_key(username))])
        session.flush()
        return self._recent(session, self._user_key(username), now)[0]

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until this address may try this name again, or None if it may now."""
        with Session(self._engine) as session:
            return self._wait(session, username, address, self._clock())

    def failed(self, username: str, address: str) -> None:
        """Count a failed sign-in against the name, the pair and the address."""
        with session_scope(self._engine) as session:
            self._lock(session)
            self._count(session, username, address, self._clock())

    def attempt(self, username: str, address: str) -> int | None:
        """Count an attempt as a failure *before* the (slow) password check, so
        parallel guesses, on one worker or several, cannot all slip under the
        limit; returns the seconds to wait when this address has reached the
        limit (nothing is counted then), else None, after the name's delay when
        it is under attack."""
        with session_scope(self._engine) as session:
            self._lock(session)
            now = self._clock()
            wait = self._wait(session, username, address, now)
            if wait is not None:
                return wait
            tried = self._count(session, username, address, now)
        if tried > self.max_failures:
            self._sleep(self.user_delay_s)
        return None

    def succeeded(self, username: str, address: str | None = None) -> None:
        """Forget the name's failures from this address and its delay, and take
        back the attempt counted against the address by :meth:`attempt` (its
        earlier failures stay)."""
        with session_scope(self._engine) as session:
            self._lock(session)
            keys = [self._user_key(username)]
            if address is not None:
                pair, addr = self._keys(username, address)
                keys.append(pair)
                latest = session.exec(select(func.max(LoginFailure.id))
                                      .where(LoginFailure.key == addr)).one()
                if latest is not None:
                    session.execute(delete(LoginFailure).where(col(LoginFailure.id) == latest))
            session.execute(delete(LoginFailure).where(col(LoginFailure.key).in_(keys)))
