"""Users, passwords and API tokens: administration and who is asking."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.auth.sessions import end_sessions
from hospital_hub.auth_models import Role, User, UserCreate, UserPublic
from hospital_hub.db import session_scope
from hospital_hub.db_types import utcnow
from hospital_hub.models import Hospital
from shared.errors import GoldenhourError, NotFound

logger = logging.getLogger(__name__)

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
    """Store a new user (``replace``: or update the one with that name, which
    ends every session of that user: a new password signs everyone out).

    Raises:
        AuthError: the name is taken, or the hospital is not in the registry.
    """
    with session_scope(engine) as session:
        if spec.hospital_id and session.get(Hospital, spec.hospital_id) is None:
            raise AuthError(f"no hospital {spec.hospital_id} in the registry")
        user = session.exec(select(User).where(User.username == spec.username)).first()
        if user is not None and not replace:
            raise AuthError(f"user {spec.username} exists")
        if user is not None and user.id is not None:
            ended = end_sessions(session, user.id)
            if ended:
                logger.info("sessions ended: user replaced",
                            extra={"username": spec.username, "sessions": ended})
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
