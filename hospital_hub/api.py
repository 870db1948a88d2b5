"""The hub's web app (FastAPI): :func:`create_app` puts together the JSON API
(:mod:`hospital_hub.routes`, one module per resource), the web pages
(:mod:`hospital_hub.pages`), dispatch's re-offer, the ER verdicts, the
operators' routes and the static assets. Every state change goes through the
same service layer as the MQTT handlers.

Who may do what is decided by the dependencies in :mod:`hospital_hub.deps`,
listed in ``docs/app-security.md`` and checked, route by route, by
``tests/integration/test_auth.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from hospital_hub import dispatch_routes, verdict_routes
from hospital_hub.api_contract import SWAGGER_ASSETS, add_html_errors, install_openapi
from hospital_hub.auth import HubSecurity
from hospital_hub.deps import AnyUser
from hospital_hub.ops import add_ops_routes
from hospital_hub.pages import pages
from hospital_hub.pages.render import STATIC, render
from hospital_hub.routes import api, health, model_offer
from hospital_hub.runtime import HubRuntime
from shared import __version__
from shared.notice import AI_NOTICE


def create_app(
    runtime: HubRuntime, manage_runtime: bool = True, wait_for_broker: bool = True
) -> FastAPI:
    """Build the app around ``runtime``; with ``manage_runtime`` the app's
    lifespan starts and stops it. Without ``wait_for_broker`` the pages come
    up at once and the broker connection follows when it can (``/health``
    says ``degraded`` until then)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            runtime.start(wait=wait_for_broker)
        try:
            yield
        finally:
            if manage_runtime:
                runtime.stop()

    app = FastAPI(title="goldenhour hub", version=__version__, lifespan=lifespan,
                  description=f"Routes ambulance chest X-ray cases to ERs. {AI_NOTICE}. "
                              "Sign in at /login, or send a service client's token as "
                              "'Authorization: Bearer <token>'.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.state.security = HubSecurity(runtime.settings, runtime.engine)

    app.include_router(health.router)
    add_ops_routes(app, runtime)  # /health/live, /health/ready, /metrics

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: AnyUser) -> dict[str, Any]:
        """The OpenAPI schema (signed-in users and service clients)."""
        return app.openapi()

    app.include_router(api)
    app.include_router(model_offer.router)
    verdict_routes.install(app, runtime)  # ER verdicts, /performance
    app.include_router(dispatch_routes.router)
    app.include_router(pages)
    install_openapi(app)  # bearer auth and the error answers in the schema

    def error_page(request: Request, status: int, detail: str) -> Any:
        return render(request, "error.html", None, status_code=status, status=status, detail=detail)

    add_html_errors(app, error_page)
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER_ASSETS), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
