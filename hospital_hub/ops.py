"""Routes for operators and orchestrators: liveness, readiness and metrics.

- ``GET /health/live``: 200 while the process serves HTTP (a supervisor
  restarts the service when it stops answering).
- ``GET /health/ready``: 200 when the database answers and the broker
  connection is up, else 503 with what is missing (a load balancer sends no
  traffic to a worker that is not ready); it also says whether the worker is
  overloaded, how old case messages are when handled and how many wait, and
  whether the position lane is up (none of these makes it "not ready").
- ``GET /metrics``: Prometheus text (:mod:`hospital_hub.metrics`). Open like
  ``/health`` (the figures hold no patient data) unless
  ``GOLDENHOUR_HUB_METRICS_TOKEN`` is set; then it needs
  ``Authorization: Bearer <token>``.

``/health`` (in :mod:`hospital_hub.routes.health`) stays as it was: the figures an
operator looks at first.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared import __version__

if TYPE_CHECKING:
    from hospital_hub.runtime import HubRuntime

logger = logging.getLogger(__name__)


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["alive"] = "alive"
    version: str


class Readiness(BaseModel):
    """Whether this worker can do its work, and what is missing if not."""

    status: Literal["ready", "not_ready"]
    database: bool
    """The database answered ``SELECT 1``."""
    broker_connected: bool
    """This worker's MQTT connection is up."""
    overloaded: bool = False
    """Case messages wait: capacity refreshes and position writes are deferred
    (cases never are). Still ready: the worker works, slower (docs/scaling.md)."""
    event_lag_s: float = 0.0
    """Median age of case messages when their handling began (last 2 s)."""
    event_queue_depth: int = 0
    """Case messages received and waiting for the handler thread."""
    position_lane: bool = True
    """The position lane runs and its subscription stands."""


def database_answers(engine: Engine) -> bool:
    """Whether ``SELECT 1`` succeeds (a fresh or pinged pooled connection)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", with the reason logged
        logger.warning("readiness: database unavailable", extra={"error": str(exc)[:300]})
        return False
    return True


def readiness(runtime: HubRuntime) -> Readiness:
    """Check the database and the broker connection now."""
    database = database_answers(runtime.engine)
    broker = runtime.communicator.connected
    load = runtime.load.figures()
    return Readiness(status="ready" if database and broker else "not_ready", database=database,
                     broker_connected=broker, overloaded=runtime.overloaded,
                     event_lag_s=round(load["lag_s"], 3),
                     event_queue_depth=int(load["queue_depth"]),
                     position_lane=runtime.position_lane_up)


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def add_ops_routes(app: FastAPI, runtime: HubRuntime) -> None:
    """Add ``/health/live``, ``/health/ready`` and ``/metrics`` to the hub's app."""

    @app.get("/health/live", tags=["ops"], response_model=Liveness)
    def live() -> Liveness:
        """Liveness: the process serves requests (no sign-in needed)."""
        return Liveness(version=__version__)

    @app.get("/health/ready", tags=["ops"], response_model=Readiness,
             responses={503: {"model": Readiness, "description": "database or broker unavailable"}})
    def ready() -> JSONResponse:
        """Readiness: the database answers and the broker connection is up;
        503 otherwise (no sign-in needed)."""
        result = readiness(runtime)
        return JSONResponse(result.model_dump(),
                            status_code=200 if result.status == "ready" else 503,
                            headers={"Cache-Control": "no-store"})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus metrics; open unless GOLDENHOUR_HUB_METRICS_TOKEN is set."""
        token = runtime.settings.metrics_token
        if token is not None and not _authorised(request, token.get_secret_value()):
            return Response("metrics need 'Authorization: Bearer <token>'\n", status_code=401,
                            headers={"WWW-Authenticate": "Bearer"}, media_type="text/plain")
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})
