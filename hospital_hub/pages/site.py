"""Signing in and out, the language switch and the API documentation page."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hospital_hub import i18n
from hospital_hub.api_contract import swagger_page
from hospital_hub.auth import SESSION_COOKIE, Principal, verify_password
from hospital_hub.deps import MaybeUser, PageAnyUser, SecurityDep, client_address, same_origin
from hospital_hub.pages.render import home, lang, render, safe_next

logger = logging.getLogger(__name__)

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: MaybeUser, next: str | None = None) -> HTMLResponse:
    """The sign-in form."""
    return render(request, "login.html", user, next=safe_next(next) or "", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    security: SecurityDep,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """Check the password, start a session and set its cookie; at most
    ``login_max_failures`` failures per name and per address in
    ``login_window_s`` (counted in the database, across every worker), then
    429 with ``Retry-After``."""
    client = client_address(request) or "unknown"
    wait = security.limiter.attempt(username, client)
    if wait is not None:
        logger.warning("sign-in refused: too many failures", extra={"username": username,
                                                                   "client": client})
        security.access.event(username, "-", "login_refused", client)
        return render(request, "login.html", None, status_code=429,
                      headers={"Retry-After": str(wait)}, next=safe_next(next) or "",
                      error=i18n.translate(lang(request), "login.too_many", wait=wait))
    stored = verify_password(security.engine, username, password)
    if stored is None:  # already counted by attempt()
        logger.info("sign-in failed", extra={"username": username, "client": client})
        security.access.event(username, "-", "login_failed", client)
        return render(request, "login.html", None, status_code=401, next=safe_next(next) or "",
                      error=i18n.translate(lang(request), "login.wrong"))
    security.limiter.succeeded(username, client)
    user = Principal.of(stored, "session")
    logger.info("signed in", extra={"username": user.username, "role": user.kind, "client": client})
    security.access.event(user.username, user.kind, "login", client)
    response = RedirectResponse(safe_next(next) or home(user), status_code=303)
    response.set_cookie(SESSION_COOKIE, security.sessions.start(stored),
                        max_age=int(security.sessions.max_age_s), httponly=True, samesite="lax",
                        secure=security.cookie_secure, path="/")
    return response


@router.post("/logout")
def logout(request: Request, user: MaybeUser, security: SecurityDep) -> RedirectResponse:
    """Sign out: the session ends on the hub (a copy of the cookie opens
    nothing any more) and the cookie is removed."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        security.sessions.end(cookie)
    if user is not None:
        security.access.event(user.username, user.kind, "logout", client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/lang")
def set_language(request: Request, lang: Annotated[str, Form(max_length=8)],
                 next: Annotated[str | None, Form(max_length=500)] = None) -> RedirectResponse:
    """The language toggle: sets the ``lang`` cookie (English or Korean) and goes back."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    response = RedirectResponse(safe_next(next) or "/", status_code=303)
    response.set_cookie(i18n.COOKIE, i18n.normalise(lang), max_age=365 * 24 * 3600,
                        samesite="lax", path="/")
    return response


@router.get("/docs", response_class=HTMLResponse)
def api_docs(user: PageAnyUser) -> HTMLResponse:
    """The interactive API documentation (signed-in users)."""
    return swagger_page()  # its assets ship with the package: works offline

