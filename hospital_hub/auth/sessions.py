"""Server-side sign-in sessions and the key that signs their cookies.

The cookie is ``<random id>.<HMAC-SHA256 of the id>``; the database keeps the
SHA-256 of the id with the user and the expiry (:class:`LoginSession`). A
cookie opens a page only while its row exists, so sign-out and a password
change end it on every hub worker, also for a copy of the cookie. The
signature lets a worker refuse forged cookies without asking the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col

from hospital_hub.auth_models import LoginSession, Role, User
from hospital_hub.db import session_scope
from hospital_hub.settings import HubSettings

logger = logging.getLogger(__name__)

SESSION_COOKIE = "goldenhour_session"


def load_secret_key(settings: HubSettings) -> bytes:
    """The key that signs session cookies: ``secret_key``, else the key file
    (``secret_key_file``, or ``<SQLite database file>.secret-key``; made on first
    use, mode 0600), else a random key for this process only."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.secret_key_file
    if path is None:
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            path = Path(f"{url.database}.secret-key")
    if path is None:
        logger.warning("no GOLDENHOUR_HUB_SECRET_KEY; sign-ins last until this process stops")
        return secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored = path.read_bytes().strip()
        if len(stored) >= 32:
            return stored
        # A crash between creating and writing the file leaves it short: replace it.
        logger.warning("session key file too short; making a new one", extra={"path": str(path)})
        path.unlink()
        return _replace_key(path)
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    logger.info("session key created", extra={"path": str(path)})
    return key


def _replace_key(path: Path) -> bytes:
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def end_sessions(session: Session, user_id: int) -> int:
    """Delete every session of the user in the caller's transaction; returns how many."""
    result = session.execute(delete(LoginSession).where(col(LoginSession.user_id) == user_id))
    return int(result.rowcount or 0)


class SessionStore:
    """Starts, resolves and ends sign-in sessions; ``max_age_s`` after sign-in
    a session ends whatever happens (its row is deleted at a later sign-in)."""

    def __init__(self, engine: Engine, key: bytes, max_age_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._key = key
        self.max_age_s = max_age_s
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _mac(self, session_id: str) -> str:
        digest = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _session_id(self, cookie: str) -> str | None:
        """The id in a cookie whose signature holds, else None."""
        session_id, _, mac = cookie.partition(".")
        # Compare bytes: compare_digest refuses non-ASCII str, and cookies are any text.
        if not session_id or not mac or not hmac.compare_digest(
                mac.encode("utf-8", "replace"), self._mac(session_id).encode()):
            return None
        return session_id

    def start(self, user: User) -> str:
        """Store a new session of ``user``; returns the cookie value."""
        assert user.id is not None
        session_id = secrets.token_urlsafe(32)
        now = self._now()
        with session_scope(self._engine) as session:
            session.execute(delete(LoginSession).where(col(LoginSession.expires_at) <= now))
            session.add(LoginSession(id_sha256=_sha256(session_id), user_id=user.id, created_at=now,
                                     expires_at=now + timedelta(seconds=self.max_age_s)))
        return f"{session_id}.{self._mac(session_id)}"

    def user(self, session: Session, cookie: str) -> User | None:
        """The active person whose live session the cookie names, or None if it
        is forged, expired, signed out or ended by a password change."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        row = session.get(LoginSession, _sha256(session_id))
        if row is None or row.expires_at <= self._now():
            return None
        user = session.get(User, row.user_id)
        if user is None or not user.active or user.role == Role.SERVICE:
            return None
        return user

    def end(self, cookie: str) -> bool:
        """Delete the cookie's session (sign-out); False if it named none."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return False
        with session_scope(self._engine) as session:
            row = session.get(LoginSession, _sha256(session_id))
            if row is None:
                return False
            session.delete(row)
        return True
