"""Rendering the hub's HTML: the templates, the page language, and where a
user lands after signing in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hospital_hub import i18n
from hospital_hub.auth import Principal
from shared import __version__
from shared.notice import AI_NOTICE

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=str(PACKAGE / "templates"))
STATIC = PACKAGE / "static"


def lang(request: Request) -> str:
    """The page language from the ``lang`` cookie (English unless Korean)."""
    return i18n.normalise(request.cookies.get(i18n.COOKIE))


def render(request: Request, template: str, user: Principal | None, status_code: int = 200,
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """A page from ``templates/`` with the user, the AI notice and the translator."""
    language = lang(request)
    return TEMPLATES.TemplateResponse(request, template, {
        "user": user, "notice": AI_NOTICE, "version": __version__, "lang": language,
        "t": i18n.translator(language), **context}, status_code=status_code, headers=headers)


def home(user: Principal) -> str:
    """Where a user lands after signing in."""
    return f"/er/{user.hospital_id}" if user.kind == "er_doctor" else "/"


def safe_next(target: str | None) -> str | None:
    """Only a path on this site (no scheme, host or ``//``) may follow a sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target
