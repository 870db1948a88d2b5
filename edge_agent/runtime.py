"""One ambulance computer's process (``goldenhour edge run``): the durable
outbox and the agent that queues into it, and around them the signed model
updater, the crew page, the X-ray receivers (DICOM C-STORE, a watched folder)
and a simulated X-ray unit. The edge's :class:`hospital_hub.runtime.HubRuntime`:
the one place the process is wired; :meth:`EdgeRuntime.start` and
:meth:`EdgeRuntime.stop` it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge_agent.agent import CaseRecord, EdgeAgent, open_outbox
from edge_agent.model_update import ModelUpdater
from edge_agent.pipeline import DiagnosisPipeline
from edge_agent.settings import EdgeSettings
from shared.mqtt import Communicator

logger = logging.getLogger(__name__)


class Service(Protocol):
    """Anything the runtime starts and stops: a receiver, the updater, the crew page."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class XraySources:
    """Where X-rays come from besides the crew page (None: the setting, else off)."""

    dicom_port: int | None = None
    """Receive by DICOM C-STORE on this port (default: ``GOLDENHOUR_EDGE_DICOM_PORT``)."""
    watch: Path | None = None
    """Diagnose every file dropped into this folder (default: ``GOLDENHOUR_EDGE_WATCH_DIR``)."""
    folder: Path | None = None
    """A simulated X-ray unit takes this folder's images, one every ``interval_s``."""
    interval_s: float = 30.0
    seed: int = 0


class EdgeRuntime:
    """Wires one ambulance's agent and what serves it; :meth:`start` and :meth:`stop` it."""

    def __init__(self, settings: EdgeSettings, communicator: Communicator | None = None,
                 pipeline: DiagnosisPipeline | None = None, *, sources: XraySources | None = None,
                 http_port: int | None = None, http_host: str | None = None,
                 on_case: Callable[[CaseRecord], None] | None = None) -> None:
        self.settings = settings
        self.sources = sources or XraySources()
        self.outbox = open_outbox(settings)
        """Every case message waits here for the broker; survives restarts."""
        try:
            self.agent = EdgeAgent(settings, communicator, pipeline, outbox=self.outbox)
        except BaseException:  # a missing or altered model: nothing stays open
            self.outbox.close()
            raise
        self.updater = ModelUpdater.from_settings(settings, self.agent.models)
        """Polls the hub for signed model releases (None unless configured)."""
        self.crew: Any = None
        """The crew page (a :class:`edge_agent.web.CrewServer`), when a port is set."""
        port = http_port or settings.http_port
        if port:
            from edge_agent.web import CrewServer

            self.crew = CrewServer(self.agent, host=http_host or settings.http_host, port=port)
        self._on_case = on_case
        self.receivers: list[Service] = []
        """The X-ray sources, started by :meth:`start`."""
        self._started: list[Service] = []
        self._running = False

    def _on_image(self, path: Path) -> None:
        """A receiver's callback: raises on a bad image, so the X-ray unit gets a
        failure status and a watched file moves to failed/ with the reason."""
        record = self.agent.submit(path)
        if self._on_case is not None:
            self._on_case(record)

    def start(self, wait: bool = False) -> None:
        """Connect (in the background unless ``wait``: an ambulance may boot in a
        dead zone), forward the outbox, then start the updater, the crew page and
        the X-ray sources. Anything that fails to start stops what had started.

        Raises:
            GoldenhourError: with ``wait``, the broker is unreachable; or a receiver cannot start.
        """
        self._running = True
        self.agent.start(wait=wait)
        try:
            for service in (self.updater, self.crew):
                if service is not None:
                    service.start()
                    self._started.append(service)
            self.receivers = start_receivers(self._on_image, self.settings, self.sources.dicom_port,
                                             self.sources.watch)
            self._started += self.receivers
            if self.sources.folder is not None:
                from edge_agent.receivers.simulated import SimulatedXrayUnit

                unit = SimulatedXrayUnit(self.sources.folder, self._on_image,
                                         interval_s=self.sources.interval_s, seed=self.sources.seed)
                unit.start()
                self.receivers.append(unit)
                self._started.append(unit)
        except BaseException:
            self.stop()
            raise

    @property
    def has_xray_source(self) -> bool:
        """Whether anything brings X-rays in (a receiver, a simulated unit or the crew page)."""
        return bool(self.receivers) or self.crew is not None

    def stop(self) -> None:
        """Stop the sources first (no new case half-made), then the page, the
        updater and the agent; close the outbox (what is queued stays on disk)."""
        if self._running:
            self._running = False
            for service in reversed(self._started):
                try:
                    service.stop()
                except Exception:  # stopping the rest matters more
                    logger.exception("could not stop %s", type(service).__name__)
            self._started.clear()
            self.agent.stop()
        self.outbox.close()


def start_receivers(on_image: Callable[[Path], Any], settings: EdgeSettings, dicom_port: int | None,
                    watch: Path | None) -> list[Service]:
    """The DICOM receiver and the watched folder that were asked for (or set), started.

    ``on_image`` raises on a bad image, so the X-ray unit gets a failure status
    and a watched file moves to failed/ with the reason: nothing is lost silently.
    """
    from edge_agent.receivers import DicomStorageSCP, WatchFolder

    receivers: list[Service] = []
    port = dicom_port or settings.dicom_port
    if port:
        scp = DicomStorageSCP(settings.state_dir / "dicom-inbox", on_image, ae_title=settings.dicom_ae_title,
                              port=port, host=settings.dicom_host,
                              retention_s=settings.dicom_inbox_retention_h * 3600,
                              max_bytes=int(settings.dicom_inbox_max_mb * 1024 * 1024))
        scp.start()
        receivers.append(scp)
        logger.info("DICOM C-STORE receiver started", extra={
            "ae_title": settings.dicom_ae_title, "port": scp.port})
    folder = watch or settings.watch_dir
    if folder:
        watcher = WatchFolder(folder, on_image)
        try:
            watcher.start()
        except BaseException:
            for receiver in receivers:
                receiver.stop()
            raise
        receivers.append(watcher)
    return receivers
