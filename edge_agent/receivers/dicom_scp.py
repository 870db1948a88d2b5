"""A DICOM Storage SCP: the X-ray unit in the ambulance sends images here.

The SCP accepts Computed Radiography, Digital X-Ray (for presentation and
for processing) and Secondary Capture storage, in the common transfer syntaxes (implicit and
explicit VR little endian, deflated, JPEG baseline, extended and lossless,
JPEG-LS, JPEG 2000, RLE), and answers C-ECHO. Each received object is written
atomically (a hidden temporary file, flushed, then renamed) into the inbox
folder as ``<SOPInstanceUID>.dcm`` (owner-only, see :mod:`edge_agent.receivers.inbox`)
and handed to ``on_image(path)``. Once the callback returns (the case is in the
outbox) the file is deleted. When the callback raises, the sender gets a failure
status (``0xC000``, or ``0xA700`` when the file cannot be written) with the
reason as its Error Comment, the SCP goes on serving, and the file is kept in
``refused/`` with its reason, within a retention time and a byte budget.

``on_image`` runs in the association's thread: two X-ray units sending at once
call it concurrently.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydicom.uid import (
    JPEG2000,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)
from pydicom.uid import JPEGLossless as JPEGLosslessP14

from edge_agent.receivers.inbox import DEFAULT_MAX_BYTES, DEFAULT_RETENTION_S, DicomInbox
from shared.errors import ConfigurationError

logger = logging.getLogger(__name__)

OnImage = Callable[[Path], None]
"""Called once per received image file; an exception marks that image failed."""

STORAGE_SOP_CLASSES: tuple[str, ...] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
"""CR and DX, what a portable chest X-ray unit sends, and Secondary Capture, which
PACS exports and converted radiographs often use (the real SIIM test file is one);
:func:`edge_agent.imaging.load_image` still insists on a grey-scale image."""

TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessP14, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
)
"""Accepted for every storage SOP class (each one :func:`edge_agent.imaging.load_image` decodes)."""

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
"""The file could not be written (disk full, permissions)."""
STATUS_CANNOT_PROCESS = 0xC000
"""The image was stored but ``on_image`` failed on it (e.g. not a usable chest X-ray)."""

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class DicomStorageSCP:
    """A C-STORE and C-ECHO server writing into ``inbox``; see the module doc.

    Args:
        inbox: folder for received files (created when missing).
        on_image: called with each written file's path.
        ae_title: this SCP's application entity title (up to 16 characters).
        port: TCP port; 0 picks a free one (see :attr:`port` once started).
        host: address to listen on; ``0.0.0.0`` for the ambulance's LAN.
        require_called_ae_title: refuse associations addressed to another AE title.
        sop_classes: storage SOP classes accepted.
        retention_s: how long a refused object is kept (with its reason) for whoever looks into it.
        max_bytes: the most that refused objects may hold; the oldest go first.
    """

    def __init__(self, inbox: Path, on_image: OnImage, *, ae_title: str = "GOLDENHOUR", port: int = 11112,
                 host: str = "0.0.0.0", require_called_ae_title: bool = False,
                 sop_classes: Sequence[str] = STORAGE_SOP_CLASSES,
                 retention_s: float = DEFAULT_RETENTION_S, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        title = ae_title.strip()
        if not title or len(title) > 16 or not title.isascii() or "\\" in title:
            raise ConfigurationError(f"DICOM AE title must be 1-16 ASCII characters, got {ae_title!r}")
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"DICOM port must be 0-65535, got {port}")
        self.inbox = Path(inbox)
        self.store = DicomInbox(self.inbox, retention_s=retention_s, max_bytes=max_bytes)
        self.on_image = on_image
        self.ae_title = title
        self.host = host
        self._requested_port = port
        self._require_called = require_called_ae_title
        self._sop_classes = tuple(sop_classes)
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen in background threads; returns at once.

        Raises:
            ConfigurationError: the inbox cannot be created or the port is taken.
        """
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        with self._lock:
            if self._server is not None:
                return
            self.store.prepare()
            ae = AE(ae_title=self.ae_title)
            ae.require_called_aet = self._require_called
            for sop_class in self._sop_classes:
                ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
            ae.add_supported_context(Verification)
            handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo)]
            try:
                self._server = ae.start_server((self.host, self._requested_port), block=False,
                                               evt_handlers=handlers)
            except OSError as exc:
                raise ConfigurationError(f"cannot listen for DICOM on {self.host}:{self._requested_port}: "
                                         f"{exc}") from exc
        logger.info("DICOM storage SCP listening",
                    extra={"ae_title": self.ae_title, "host": self.host, "port": self.port})

    def stop(self) -> None:
        """Stop listening and end open associations."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            logger.info("DICOM storage SCP stopped", extra={"ae_title": self.ae_title})

    def __enter__(self) -> DicomStorageSCP:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _on_echo(self, event: Any) -> int:
        logger.debug("C-ECHO", extra={"calling_ae": _calling(event)})
        return STATUS_SUCCESS

    def _on_store(self, event: Any) -> Any:
        """Write the object atomically, then hand it to ``on_image``; never raises."""
        try:
            path = self._write(event)
        except Exception as exc:
            logger.exception("cannot store a received DICOM object", extra={"calling_ae": _calling(event)})
            return failure(STATUS_OUT_OF_RESOURCES, f"cannot store the object: {type(exc).__name__}")
        try:
            self.on_image(path)
        except Exception as exc:
            logger.warning("received DICOM image was not processed: %s", exc,
                           extra={"file": path.name, "calling_ae": _calling(event)})
            self.store.refuse(path, f"{type(exc).__name__}: {exc}")
            # The unit shows the comment: the reason without the file name (the unit knows the image).
            return failure(STATUS_CANNOT_PROCESS, str(exc).removeprefix(f"{path.name}: "))
        self.store.done(path)
        return STATUS_SUCCESS

    def _write(self, event: Any) -> Path:
        data = event.encoded_dataset(include_meta=True)
        uid = str(event.request.AffectedSOPInstanceUID or "")
        name = f"{uid}.dcm" if _UID.match(uid) and len(uid) <= 64 else f"{uuid.uuid4().hex}.dcm"
        final = self.store.write(name, data)
        logger.info("DICOM image received", extra={"file": final.name, "bytes": len(data),
                                                   "calling_ae": _calling(event)})
        return final


def failure(status: int, comment: str) -> Any:
    """A C-STORE response status with an Error Comment (LO: 64 characters, no backslash or control
    characters), which storescu and the X-ray unit's queue show."""
    from pydicom.dataset import Dataset

    response = Dataset()
    response.Status = status
    text = "".join(c if c.isprintable() and c != "\\" and c.isascii() else " " for c in comment)
    response.ErrorComment = " ".join(text.split())[:64] or "cannot process"
    return response


def _calling(event: Any) -> str:
    try:
        return str(event.assoc.requestor.ae_title)
    except Exception:  # only for the logs
        return "?"
