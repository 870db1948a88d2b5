"""The ambulance crew page, served by the edge agent on the ambulance computer.

:func:`create_app` builds the FastAPI app around a running agent;
:class:`CrewServer` runs it with uvicorn in a background thread (the
``goldenhour edge run --http-port`` command and the tests use it).
"""

from __future__ import annotations

from edge_agent.web.app import create_app
from edge_agent.web.server import CrewServer

__all__ = ["CrewServer", "create_app"]
