"""Run the crew page with uvicorn in a background thread of the agent's process."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from edge_agent.agent import EdgeAgent
from edge_agent.web.app import create_app

logger = logging.getLogger(__name__)


class CrewServer:
    """The crew page on ``host:port``, in a daemon thread."""

    def __init__(self, agent: EdgeAgent, host: str = "127.0.0.1", port: int = 8080,
                 **app_options: object) -> None:
        self.host, self.port = host, port
        self.app = create_app(agent, **app_options)  # type: ignore[arg-type]
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port,
                                                     log_config=None, access_log=False,
                                                     timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start serving; raise RuntimeError if it does not come up in ``timeout``."""
        self._thread = threading.Thread(target=self._server.run, name="edge-crew-page",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"crew page did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("crew page listens beyond this computer",
                           extra={"host": self.host, "port": self.port})
        logger.info("crew page serving", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=15)
