"""Who is asking, and what they did: users, passwords and API tokens
(:mod:`.users`), server-side sign-in sessions (:mod:`.sessions`), the
sign-in rate limit (:mod:`.login_limit`) and the access log
(:mod:`.access_log`). The rules of who may do what live in
:mod:`hospital_hub.deps` and ``docs/app-security.md``."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hospital_hub.auth.access_log import AccessLogger
from hospital_hub.auth.login_limit import LoginLimiter
from hospital_hub.auth.sessions import SESSION_COOKIE, SessionStore, end_sessions, load_secret_key
from hospital_hub.auth.users import (
    TOKEN_PREFIX,
    AuthError,
    Principal,
    create_token,
    create_user,
    hash_password,
    hash_token,
    list_users,
    public_user,
    user_for_token,
    verify_password,
)
from hospital_hub.settings import HubSettings

__all__ = [
    "SESSION_COOKIE", "TOKEN_PREFIX", "AccessLogger", "AuthError", "HubSecurity", "LoginLimiter",
    "Principal", "SessionStore", "create_token", "create_user", "end_sessions", "hash_password",
    "hash_token", "list_users", "load_secret_key", "public_user", "user_for_token",
    "verify_password",
]


class HubSecurity:
    """What the app needs to authenticate and audit: made by ``create_app``."""

    def __init__(self, settings: HubSettings, engine: Engine) -> None:
        self.engine = engine
        self.sessions = SessionStore(engine, load_secret_key(settings), settings.session_max_age_s)
        self.limiter = LoginLimiter(engine, settings.login_max_failures, settings.login_window_s)
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
            user = self.sessions.user(session, cookie)
            return Principal.of(user, "session") if user else None
        return None
