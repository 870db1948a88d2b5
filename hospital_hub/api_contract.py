"""The API's contract beyond the routes and their shapes (those are in
:mod:`hospital_hub.schemas`): the error responses and the bearer
authentication in the OpenAPI document, ``/docs`` served from assets that ship
with the package (it works offline), and HTML error pages for browser routes
(JSON stays for ``/api``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

SWAGGER_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI 5 (JavaScript, CSS, icon) as the fastapi-offline package ships it."""

ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request (e.g. a body that is not JSON)"},
    401: {"description": "Not signed in: sign in, or send 'Authorization: Bearer <token>'"},
    403: {"description": "Signed in, but this role may not do this (or a cross-site request)"},
    404: {"description": "No such thing, or not one this user may see"},
    409: {"description": "Conflicts with the case's state (e.g. already placed elsewhere)"},
}
"""The error answers of the API as they happen, each ``{"detail": "..."}``."""


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare bearer authentication and the error answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR
        components["securitySchemes"] = {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "A service client's API token (goldenhour hub create-token); "
                           "people sign in at /login and send the session cookie"}}
        for path, operations in schema.get("paths", {}).items():
            public = path == "/health"
            for operation in operations.values():
                if public:
                    operation["security"] = []
                    continue
                operation["security"] = [{"bearerAuth": []}]
                codes = [400, 401, 403] + ([404] if "{" in path else [])
                codes += [409] if path.endswith(("/decision", "/updates", "/reoffer")) else []
                responses = operation.setdefault("responses", {})
                for code in codes:
                    responses.setdefault(str(code), {
                        **ERRORS[code],
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/Error"}}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def swagger_page() -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, its assets from ``/static/swagger`` (no CDN)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="goldenhour hub API",
                               swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                               swagger_css_url="/static/swagger/swagger-ui.css",
                               swagger_favicon_url="/static/swagger/favicon.png")


MACHINE_PREFIXES = ("/api/", "/openapi.json", "/health", "/metrics", "/static/")


def add_html_errors(app: FastAPI, render: Callable[..., Response]) -> None:
    """A browser asking a page route gets an HTML page for 403, 404 and 422;
    machine routes (``/api`` and the like) keep their JSON."""

    @app.exception_handler(StarletteHTTPException)
    async def html_errors(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path
        if (exc.status_code in (403, 404, 422) and not path.startswith(MACHINE_PREFIXES)
                and "text/html" in request.headers.get("accept", "")):
            return render(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)
