"""Ways for an X-ray to reach the edge: a DICOM Storage SCP that the X-ray
unit sends to (:class:`DicomStorageSCP`), and a watched folder that files are
dropped or exported into (:class:`WatchFolder`). Both hand each complete file
to an ``on_image(path)`` callback; see ``docs/edge-ingest.md``."""

from __future__ import annotations

from edge_agent.receivers.dicom_scp import DicomStorageSCP, OnImage
from edge_agent.receivers.watch_folder import WatchFolder

__all__ = ["DicomStorageSCP", "OnImage", "WatchFolder"]
