"""A simulated X-ray unit: takes the X-rays of a folder, in a seeded random
order, one every ``interval_s`` (``goldenhour edge run --folder``)."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

from edge_agent.receivers.dicom_scp import OnImage
from shared.background import BackgroundLoop
from shared.errors import GoldenhourError, InputImageError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}


class SimulatedXrayUnit:
    """Hands the folder's images to ``on_image`` in turn, round and round; a bad
    image is logged (by its digest: a file name can name the patient) and the
    unit goes on with the next."""

    def __init__(self, folder: Path, on_image: OnImage, *, interval_s: float = 30.0, seed: int = 0) -> None:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        self.images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        random.Random(seed).shuffle(self.images)
        if not self.images:
            logger.warning("no X-ray files (PNG, JPEG, DICOM) in %s", folder)
        self._on_image = on_image
        self._index = 0
        self._loop = BackgroundLoop("edge-xray-unit", self._take, interval_s,
                                    first_delay_s=min(interval_s, 2.0), join_timeout_s=30)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _take(self) -> None:
        if not self.images:
            return
        path = self.images[self._index % len(self.images)]
        self._index += 1
        try:
            self._on_image(path)
        except InputImageError as exc:
            logger.error("image not usable", extra={
                "image": digest(path), "detail": str(exc).replace(path.name, "<image>")})
        except GoldenhourError as exc:
            logger.error("case not queued", extra={
                "image": digest(path), "error": type(exc).__name__,
                "detail": str(exc).replace(path.name, "<image>")})
        except Exception:  # one bad image must not stop the ambulance's agent
            logger.exception("case failed", extra={"image": digest(path)})


def digest(path: Path) -> str:
    """A short, stable name for a file that does not repeat its (maybe personal) name."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]
