"""Crew page sessions: an HMAC-signed cookie, the optional PIN, CSRF tokens.

The session cookie holds a random session id, the session's CSRF token, its
expiry and whether the PIN was given; it is signed with HMAC-SHA256 so that
it cannot be forged or changed. Every form carries the CSRF token in a hidden
field and every POST is refused unless it matches the cookie's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "gh_crew"


@dataclass(frozen=True)
class Session:
    """One browser's session on the crew page."""

    sid: str
    csrf: str
    expires: float
    unlocked: bool


class SessionSigner:
    """Makes and checks signed session cookies."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def new(self, unlocked: bool) -> Session:
        """A fresh session (new id and CSRF token)."""
        return Session(sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(32),
                       expires=time.time() + self.ttl_s, unlocked=unlocked)

    def dump(self, session: Session) -> str:
        """The cookie value for ``session``."""
        body = base64.urlsafe_b64encode(json.dumps(
            [session.sid, session.csrf, session.expires, session.unlocked]).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when missing, forged or expired."""
        if not value or "." not in value:
            return None
        body, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature.encode("utf-8", "replace"),
                                   self._sign(body).encode()):
            return None
        try:
            sid, csrf, expires, unlocked = json.loads(base64.urlsafe_b64decode(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(expires, (int, float)) or expires < time.time():
            return None
        return Session(sid=str(sid), csrf=str(csrf), expires=float(expires),
                       unlocked=bool(unlocked))

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a form's token matches its session's."""
    return bool(session and token and hmac.compare_digest(session.csrf.encode(),
                                                           token.encode("utf-8", "replace")))


class PinGate:
    """Checks the crew PIN, refusing for a minute after five wrong tries."""

    def __init__(self, pin: str | None, max_tries: int = 5, lockout_s: float = 60.0) -> None:
        self.pin = pin
        self._max_tries = max_tries
        self._lockout_s = lockout_s
        self._wrong = 0
        self._locked_until = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether a PIN is required at all."""
        return bool(self.pin)

    def check(self, attempt: str) -> bool | None:
        """True: right PIN; False: wrong; None: locked out (too many tries)."""
        with self._lock:
            if time.monotonic() < self._locked_until:
                return None
            if self.pin and hmac.compare_digest(attempt.encode(), self.pin.encode()):
                self._wrong = 0
                return True
            self._wrong += 1
            if self._wrong >= self._max_tries:
                self._wrong = 0
                self._locked_until = time.monotonic() + self._lockout_s
            return False
