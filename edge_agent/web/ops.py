"""Liveness, readiness and Prometheus metrics on the crew page's server.

- ``GET /health/live``: 200 while the agent's web server answers.
- ``GET /health/ready``: 200 when the durable outbox answers and the broker
  connection is up, else 503 with what is missing. An agent that is not
  ready still takes X-rays: cases wait in the outbox until the link is back.
- ``GET /metrics``: Prometheus text (:mod:`edge_agent.metrics`).

All three are open (no PIN): they carry no patient data, and the crew page
listens on loopback unless deliberately changed (``GOLDENHOUR_EDGE_HTTP_HOST``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from shared import __version__

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent

logger = logging.getLogger(__name__)

OPS_PATHS = ("/health", "/metrics")
"""Path prefixes served without the PIN."""


class EdgeReadiness(BaseModel):
    """Whether the agent can queue and send cases now."""

    status: Literal["ready", "not_ready"]
    outbox: bool
    """The durable outbox database answered."""
    broker_connected: bool


def readiness(agent: EdgeAgent) -> EdgeReadiness:
    """Check the outbox and the broker connection now."""
    try:
        agent.outbox.pending()
        outbox = True
    except Exception as exc:  # e.g. the disk or the database file is gone
        logger.warning("readiness: outbox unavailable", extra={"error": str(exc)[:300]})
        outbox = False
    broker = agent.communicator.connected
    return EdgeReadiness(status="ready" if outbox and broker else "not_ready", outbox=outbox,
                         broker_connected=broker)


def add_ops_routes(app: FastAPI, agent: EdgeAgent) -> None:
    """Add ``/health/live``, ``/health/ready`` and ``/metrics`` to the crew page's app."""

    @app.get("/health/live")
    def live() -> dict[str, str]:
        """Liveness: the server answers."""
        return {"status": "alive", "version": __version__}

    @app.get("/health/ready")
    def ready() -> JSONResponse:
        """Readiness: outbox usable and broker connected; 503 otherwise."""
        result = readiness(agent)
        return JSONResponse(result.model_dump(),
                            status_code=200 if result.status == "ready" else 503,
                            headers={"Cache-Control": "no-store"})

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics of this agent."""
        return Response(generate_latest(agent.metrics.registry), media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})
