"""Tables of people, service clients, sign-in sessions, failed sign-ins and
the access log (re-exported by :mod:`hospital_hub.models`)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import model_validator
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from hospital_hub.db_types import ts_column as _ts
from hospital_hub.db_types import utcnow

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class Role(StrEnum):
    """What a user may do; see docs/app-security.md for the full table."""

    ADMIN = "admin"
    DISPATCHER = "dispatcher"
    ER_DOCTOR = "er_doctor"
    """Bound to one hospital: sees and decides only that ER's offers."""
    SERVICE = "service"
    """A machine client with an API token, bound to a hospital (an ER
    integration) or to an ambulance."""


class UserBase(SQLModel):
    """A person or a machine client of the hub."""

    username: str = Field(max_length=64, unique=True, index=True)
    role: Role
    hospital_id: str | None = Field(default=None, max_length=64)
    """The ER an ``er_doctor`` or an ER ``service`` client belongs to."""
    ambulance_id: str | None = Field(default=None, max_length=64)
    """The ambulance a ``service`` client speaks for."""
    active: bool = True


class UserCreate(UserBase):
    """A user to create; people need a password, service clients a token instead."""

    password: str | None = Field(default=None, min_length=10, max_length=256)

    @model_validator(mode="after")
    def _bindings_fit_the_role(self) -> UserCreate:
        if not USERNAME.fullmatch(self.username):
            raise ValueError("a username is letters, digits and _ . @ - (not first)")
        if self.role == Role.ER_DOCTOR and (not self.hospital_id or self.ambulance_id):
            raise ValueError("an er_doctor needs a hospital id (and no ambulance id)")
        if self.role == Role.SERVICE and bool(self.hospital_id) == bool(self.ambulance_id):
            raise ValueError("a service client needs either a hospital id or an ambulance id")
        if self.role in (Role.ADMIN, Role.DISPATCHER) and (self.hospital_id or self.ambulance_id):
            raise ValueError(f"the role {self.role.value} is bound to no hospital or ambulance")
        if self.role == Role.SERVICE and self.password:
            raise ValueError("service clients sign in with a token, not a password")
        if self.role != Role.SERVICE and not self.password:
            raise ValueError(f"the role {self.role.value} needs a password")
        return self


class User(UserBase, table=True):
    """A user with the argon2 hash of its password and the SHA-256 of its API token."""

    __tablename__ = "useraccount"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str | None = Field(default=None, max_length=256)
    token_hash: str | None = Field(default=None, max_length=64, index=True)
    """SHA-256 (hex) of the bearer token; the token itself is never stored."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    token_created_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class UserPublic(UserBase):
    """A user as listings show it (no hashes)."""

    id: int
    created_at: datetime
    has_password: bool = False
    has_token: bool = False


class AccessLogBase(SQLModel):
    """Who saw or changed what, and when; never patient data."""

    at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False, index=True))
    username: str = Field(max_length=64)
    role: str = Field(max_length=16)
    action: str = Field(max_length=16)
    """``view``, ``change``, ``login``, ``login_failed`` or ``logout``."""
    what: str = Field(max_length=64)
    """The route or page, e.g. ``record.pdf``, ``er_page``, ``decision``."""
    case_id: str | None = Field(default=None, max_length=64, index=True)
    hospital_id: str | None = Field(default=None, max_length=64)
    client: str | None = Field(default=None, max_length=64)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # type: ignore[type-arg]


class AccessLog(AccessLogBase, table=True):
    """One entry of the access log (separate from the case's own audit trail,
    so that reading a record does not grow the record)."""

    id: int | None = Field(default=None, primary_key=True)


class AccessLogPublic(AccessLogBase):
    """An access log entry as the audit endpoint shows it."""

    id: int



class LoginSession(SQLModel, table=True):
    """A signed-in browser. The cookie carries a random id; only its SHA-256 is
    stored, so the table cannot be replayed as cookies. Sign-out deletes the
    row, a password change deletes every row of the user: the cookie then opens
    nothing, on every hub worker."""

    id_sha256: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="useraccount.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    expires_at: datetime = Field(sa_column=_ts(nullable=False, index=True))


class LoginFailure(SQLModel, table=True):
    """One failed (or still being checked) sign-in, counted under one key:
    ``pair:<name>|<address>``, ``addr:<address>`` or ``user:<name>``. In the
    database, so that the limit holds across hub workers."""

    __table_args__ = (Index("ix_loginfailure_key_at", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200)
    at: float = Field(index=True)
    """Seconds on the limiter's clock (wall-clock time, the same on every worker)."""
