"""The API's contract beyond the routes: request shapes whose rules are in the
schema (not only checked at run time), the error responses and the bearer
authentication in the OpenAPI document, ``/docs`` served from assets that
ship with the package (it works offline), and HTML error pages for browser
routes (JSON stays for ``/api``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.ids import Identifier
from shared.messages import CaseUpdateV1, Patient, Triage, Vitals

SWAGGER_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI 5 (JavaScript, CSS, icon) as the fastapi-offline package ships it."""

ISO_TIME = (r"^(19[7-9]\d|2[01]\d\d|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
            r"T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)$")
"""An ISO 8601 time with its zone, years 1970 to 2200 (a number is not a time here)."""


def _iso_text(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(ISO_TIME, value):
        raise ValueError("a time is YYYY-MM-DDTHH:MM[:SS[.ffffff]] with a zone (Z or +HH:MM), "
                         "years 1970 to 2200")
    return value


def _plausible(value: Any) -> Any:
    if not 1970 <= value.year <= 2200:
        raise ValueError("date must be between 1970 and 2200")
    return value


QueryTime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_plausible),
                      WithJsonSchema({"type": "string", "pattern": ISO_TIME,
                                      "description": "ISO 8601 with a zone, 1970 to 2200"})]
"""A query's time: ISO 8601 text with a zone, years 1970-2200, as the schema says."""

ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request (e.g. a body that is not JSON)"},
    401: {"description": "Not signed in: sign in, or send 'Authorization: Bearer <token>'"},
    403: {"description": "Signed in, but this role may not do this (or a cross-site request)"},
    404: {"description": "No such thing, or not one this user may see"},
    409: {"description": "Conflicts with the case's state (e.g. already placed elsewhere)"},
}
"""The error answers of the API as they happen, each ``{"detail": "..."}``."""


class AcceptBody(BaseModel):
    """Accept the offer; ``decided_by``: the clinician, when an integration sends it."""

    decision: Literal["accept"]
    decided_by: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=500)


class DeclineBody(BaseModel):
    """Decline the offer: a reason is required (not blank)."""

    decision: Literal["decline"]
    decided_by: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


DecisionBody = Annotated[AcceptBody | DeclineBody, Field(discriminator="decision")]


class _Update(BaseModel):
    ambulance_id: Identifier

    def message(self) -> CaseUpdateV1:
        """The same update as the MQTT message (these shapes are stricter: it validates)."""
        return CaseUpdateV1.model_validate(self.model_dump(exclude_none=True))


class CancelOrDivert(_Update):
    """Cancel the case or divert the ambulance: a reason is required (not blank)."""

    action: Literal["cancel", "divert"]
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


class PatientUpdate(_Update):
    """What the crew learnt of the patient."""

    action: Literal["patient"]
    patient: Patient


class VitalsUpdate(_Update):
    """A new set of vitals, with the triage the ambulance re-assessed from them."""

    action: Literal["vitals"]
    vitals: Vitals
    triage: Triage | None = None


class HandoverUpdate(_Update):
    """The structured pre-arrival handover (e.g. ATMIST keys to text)."""

    action: Literal["handover"]
    handover: dict[str, str] = Field(min_length=1)


UpdateBody = Annotated[CancelOrDivert | PatientUpdate | VitalsUpdate | HandoverUpdate,
                       Field(discriminator="action")]


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
