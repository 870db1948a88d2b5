"""Users, passwords, API tokens, signed session cookies, the login rate limit
and the access log. The rules of who may do what live in ``api.py`` and
``docs/app-security.md``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select

from hospital_hub.db import session_scope
from hospital_hub.models import AccessLog, Hospital, Role, User, UserCreate, UserPublic, utcnow
from hospital_hub.settings import HubSettings
from shared.errors import GoldenhourError, NotFound

logger = logging.getLogger(__name__)

SESSION_COOKIE = "goldenhour_session"
TOKEN_PREFIX = "ghs_"


class AuthError(GoldenhourError):
    """A user cannot be created or changed as asked."""


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against for unknown users, so both take the same time."""
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``."""
    return _hasher().hash(password)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of an API token; tokens are random, so no salt or stretching is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def public_user(user: User) -> UserPublic:
    """A user without its hashes."""
    return UserPublic.model_validate({**user.model_dump(), "has_password": bool(user.password_hash),
                                      "has_token": bool(user.token_hash)})


# -- user administration -------------------------------------------------------------------
def create_user(engine: Engine, spec: UserCreate, *, replace: bool = False) -> UserPublic:
    """Store a new user (``replace``: or update the one with that name).

    Raises:
        AuthError: the name is taken, or the hospital is not in the registry.
    """
    with session_scope(engine) as session:
        if spec.hospital_id and session.get(Hospital, spec.hospital_id) is None:
            raise AuthError(f"no hospital {spec.hospital_id} in the registry")
        user = session.exec(select(User).where(User.username == spec.username)).first()
        if user is not None and not replace:
            raise AuthError(f"user {spec.username} exists")
        user = user or User(username=spec.username, role=spec.role)
        user.role, user.hospital_id, user.ambulance_id = spec.role, spec.hospital_id, spec.ambulance_id
        user.active = spec.active
        user.password_hash = hash_password(spec.password) if spec.password else None
        session.add(user)
        session.flush()
        result = public_user(user)
    logger.info("user saved", extra={"username": spec.username, "role": spec.role.value})
    return result


def create_token(engine: Engine, username: str) -> str:
    """Issue a new API token for a service client (the previous one stops working).

    Returns:
        The token; it is shown once and only its hash is kept.

    Raises:
        NotFound: no such user.
        AuthError: the user is a person, not a service client.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise NotFound(f"no user {username}")
        if user.role != Role.SERVICE:
            raise AuthError(f"{username} has the role {user.role.value}; tokens are for service clients")
        user.token_hash, user.token_created_at = hash_token(token), utcnow()
        session.add(user)
    logger.info("api token issued", extra={"username": username})
    return token


def list_users(engine: Engine) -> list[UserPublic]:
    """Every user, by name."""
    with Session(engine) as session:
        return [public_user(u) for u in session.exec(select(User).order_by(col(User.username))).all()]


# -- who is asking ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """The signed-in user of a request."""

    user_id: int
    username: str
    role: Role
    hospital_id: str | None
    ambulance_id: str | None
    via: Literal["session", "token"]

    @property
    def kind(self) -> str:
        """``admin``, ``dispatcher``, ``er_doctor``, ``er_service`` or ``ambulance``."""
        if self.role == Role.SERVICE:
            return "ambulance" if self.ambulance_id else "er_service"
        return self.role.value

    @property
    def sees_all(self) -> bool:
        """Admins and dispatchers see every case and hospital."""
        return self.role in (Role.ADMIN, Role.DISPATCHER)

    @classmethod
    def of(cls, user: User, via: Literal["session", "token"]) -> Principal:
        """The principal for a stored user."""
        assert user.id is not None
        return cls(user.id, user.username, user.role, user.hospital_id, user.ambulance_id, via)


def verify_password(engine: Engine, username: str, password: str) -> User | None:
    """The active person with this name and password, or None (in constant-ish time)."""
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
    stored = user.password_hash if user is not None and user.active else None
    try:
        _hasher().verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None or user.role == Role.SERVICE:
        return None
    return user


def user_for_token(session: Session, token: str) -> User | None:
    """The active service client holding ``token``, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    user = session.exec(select(User).where(User.token_hash == hash_token(token))).first()
    if user is None or not user.active or user.role != Role.SERVICE:
        return None
    return user


# -- session cookies ---------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


class SessionSigner:
    """Signed, expiring session cookies: ``base64(json).base64(hmac-sha256)``.

    The cookie carries the user id, the time of sign-in and a fingerprint of
    the password hash, so a password change ends every session of that user.
    """

    def __init__(self, key: bytes, max_age_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.max_age_s = max_age_s
        self._clock = clock

    @staticmethod
    def _fingerprint(user: User) -> str:
        return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def sign(self, user: User) -> str:
        """A cookie value for ``user``, signed now."""
        body = _b64(json.dumps({"u": user.id, "t": int(self._clock()),
                                "p": self._fingerprint(user)}).encode())
        return f"{body}.{self._mac(body)}"

    def user(self, session: Session, cookie: str) -> User | None:
        """The active person the cookie was signed for, or None if it is forged,
        expired, or the password has changed since."""
        body, _, mac = cookie.partition(".")
        # Compare bytes: compare_digest refuses non-ASCII str, and cookies are any text.
        if not mac or not hmac.compare_digest(mac.encode("utf-8", "replace"),
                                              self._mac(body).encode()):
            return None
        try:
            data = json.loads(_unb64(body))
            user_id, signed_at, fingerprint = int(data["u"]), float(data["t"]), str(data["p"])
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= self._clock() - signed_at <= self.max_age_s:
            return None
        user = session.get(User, user_id)
        if (user is None or not user.active or user.role == Role.SERVICE
                or not hmac.compare_digest(fingerprint, self._fingerprint(user))):
            return None
        return user


# -- the login rate limit ---------------------------------------------------------------------
class LoginLimiter:
    """At most ``max_failures`` failed sign-ins per (username, client address)
    and per client address in a sliding ``window_s``; then that address is
    refused until its oldest failure leaves the window. A name is never locked
    for everyone: a stranger's wrong passwords must not lock a doctor out
    (user names are predictable, ``er-<hospital id>``). Failures of one name
    from anywhere only slow its sign-ins down: past ``max_failures`` each
    attempt waits ``user_delay_s``. Kept in memory, per hub process."""

    def __init__(self, max_failures: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic, user_delay_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.user_delay_s = user_delay_s
        self._clock = clock
        self._sleep = sleep
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        """The keys that lock: this name from this address, and this address."""
        return f"pair:{username.lower()}|{address}", f"addr:{address}"

    @staticmethod
    def _user_key(username: str) -> str:
        return f"user:{username.lower()}"

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def _wait(self, username: str, address: str, now: float) -> int | None:
        waits = [self.window_s - (now - times[0]) for key in self._keys(username, address)
                 if len(times := self._recent(key, now)) >= self.max_failures]
        return max(1, math.ceil(max(waits))) if waits else None

    def _count(self, username: str, address: str, now: float) -> int:
        """Count a failure; returns the name's failures from every address."""
        if len(self._failures) > 100_000:  # bound the memory an attacker can make us use
            for key in list(self._failures):
                self._recent(key, now)
        for key in (*self._keys(username, address), self._user_key(username)):
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)
        return len(self._failures[self._user_key(username)])

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until this address may try this name again, or None if it may now."""
        with self._lock:
            return self._wait(username, address, self._clock())

    def failed(self, username: str, address: str) -> None:
        """Count a failed sign-in against the name, the pair and the address."""
        with self._lock:
            self._count(username, address, self._clock())

    def attempt(self, username: str, address: str) -> int | None:
        """Count an attempt as a failure *before* the (slow) password check, so
        parallel guesses cannot all slip under the limit; returns the seconds to
        wait when this address has reached the limit (nothing is counted then),
        else None, after the name's delay when it is under attack."""
        with self._lock:
            now = self._clock()
            wait = self._wait(username, address, now)
            if wait is not None:
                return wait
            tried = self._count(username, address, now)
        if tried > self.max_failures:
            self._sleep(self.user_delay_s)
        return None

    def succeeded(self, username: str, address: str | None = None) -> None:
        """Forget the name's failures from this address and its delay, and take
        back the attempt counted against the address by :meth:`attempt` (its
        earlier failures stay)."""
        with self._lock:
            self._failures.pop(self._user_key(username), None)
            if address is not None:
                self._failures.pop(self._keys(username, address)[0], None)
                times = self._failures.get(self._keys(username, address)[1])
                if times:
                    times.pop()


# -- the access log -----------------------------------------------------------------------------
class AccessLogger:
    """Writes :class:`AccessLog` rows: every change, and views at most once per
    ``view_interval_s`` per (user, case, what)."""

    def __init__(self, engine: Engine, view_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self.view_interval_s = view_interval_s
        self._clock = clock
        self._last_view: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def _due(self, username: str, case_ids: Iterable[str], what: str) -> list[str]:
        now = self._clock()
        due = []
        with self._lock:
            if len(self._last_view) > 200_000:
                self._last_view = {k: t for k, t in self._last_view.items()
                                   if now - t < self.view_interval_s}
            for case_id in dict.fromkeys(case_ids):
                key = (username, case_id, what)
                last = self._last_view.get(key)
                if last is None or now - last >= self.view_interval_s:
                    self._last_view[key] = now
                    due.append(case_id)
        return due

    def viewed(self, who: Principal, what: str, case_ids: Iterable[str],
               client: str | None = None, hospital_id: str | None = None) -> None:
        """Record that ``who`` saw these cases through ``what``."""
        due = self._due(who.username, case_ids, what)
        if due:
            self._write([AccessLog(username=who.username, role=who.kind, action="view", what=what,
                                   case_id=case_id, hospital_id=hospital_id, client=client)
                         for case_id in due])

    def changed(self, who: Principal, what: str, *, case_id: str | None = None,
                hospital_id: str | None = None, client: str | None = None,
                **detail: Any) -> None:
        """Record a change ``who`` made (``detail``: what was done, never patient data)."""
        self._write([AccessLog(username=who.username, role=who.kind, action="change", what=what,
                               case_id=case_id, hospital_id=hospital_id, client=client,
                               detail=detail)])

    def event(self, username: str, role: str, action: str, client: str | None) -> None:
        """Record a sign-in, a failed one, or a sign-out."""
        self._write([AccessLog(username=username[:64], role=role, action=action, what="login",
                               client=client)])

    def _write(self, rows: list[AccessLog]) -> None:
        with session_scope(self._engine) as session:
            session.add_all(rows)


class HubSecurity:
    """What the app needs to authenticate and audit: made by ``create_app``."""

    def __init__(self, settings: HubSettings, engine: Engine) -> None:
        self.engine = engine
        self.signer = SessionSigner(load_secret_key(settings), settings.session_max_age_s)
        self.limiter = LoginLimiter(settings.login_max_failures, settings.login_window_s)
        self.access = AccessLogger(engine, settings.audit_view_interval_s)
        self.cookie_secure = settings.cookie_secure

    def principal(self, session: Session, authorization: str | None,
                  cookie: str | None) -> Principal | None:
        """The user of a request: a bearer token first, else the session cookie."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer":
                return None
            user = user_for_token(session, token.strip())
            return Principal.of(user, "token") if user else None
        if cookie:
            user = self.signer.user(session, cookie)
            return Principal.of(user, "session") if user else None
        return None


def require_known_hospital(session: Session, hospital_id: str) -> Hospital:
    """The hospital, or NotFound."""
    hospital = session.get(Hospital, hospital_id)
    if hospital is None:
        raise NotFound(f"no hospital {hospital_id}")
    return hospital
