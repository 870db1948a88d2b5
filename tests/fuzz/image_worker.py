"""A child process that decodes image files for the fuzz tests, so that a hang
can be killed and memory measured without harming the test process.

The parent sends a file path; the child answers with what ``load_image`` did,
how long it took and how far its peak RSS has grown since start-up (after
warm-up, so imports are not counted). Its address space is capped, so a real
decompression bomb ends as an escaped ``MemoryError`` rather than an
out-of-memory kill of the machine.
"""

from __future__ import annotations

import io
import resource
import time
import traceback
import warnings
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

ADDRESS_SPACE_HEADROOM = 3 * 1024**3
"""Virtual memory the child may add to what it has after warm-up."""


@dataclass(frozen=True)
class Decoded:
    """What one call of ``load_image`` did."""

    outcome: str
    """``ok``, ``InputImageError`` or ``escaped``."""
    detail: str
    seconds: float
    rss_growth_mb: float
    """Peak RSS of the child now minus its peak after warm-up."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _warm_up(folder: Path) -> None:
    """Import and run every decoder once, so that later growth is the input's."""
    from edge_agent.imaging import load_image

    y, x = np.mgrid[0:256, 0:256]
    pixels = ((np.sin(x / 9.0) + np.cos(y / 13.0) + 2) * 60).astype(np.uint8)
    for name, fmt in (("warm.png", "PNG"), ("warm.jpg", "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        (folder / name).write_bytes(buffer.getvalue())
        load_image(folder / name)
    import pydicom  # noqa: F401  (the DICOM decoder imports it lazily)


def serve(connection: Connection, folder: str) -> None:
    """Decode paths received on ``connection`` until it sends None."""
    from edge_agent.imaging import load_image
    from shared.errors import InputImageError

    warnings.simplefilter("ignore")
    _warm_up(Path(folder))
    limit = _vm_size() + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    baseline = _peak_rss_mb()
    connection.send("ready")
    while (message := connection.recv()) is not None:
        start = time.perf_counter()
        try:
            image = load_image(Path(message))
            outcome, detail = "ok", f"{image.format} {image.pixels.shape} {image.pixels.dtype}"
        except InputImageError as exc:
            outcome, detail = "InputImageError", str(exc)[:300]
        except BaseException as exc:  # what the test is looking for: anything else
            outcome = "escaped"
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[:4000]
        connection.send(Decoded(outcome, detail, time.perf_counter() - start,
                                _peak_rss_mb() - baseline))
