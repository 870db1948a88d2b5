"""Synthetic images that the edge's chest X-ray guard accepts, for tests that
need a case but not a real patient: the guard's own average chest X-ray
(its template), enlarged, with grain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent.pipeline_slot import chest_like

__all__ = ["chest_like", "chest_like_png"]


def chest_like_png(path: Path, size: int = 512, seed: int = 0, bits: int = 8) -> Path:
    """Write :func:`chest_like` as an 8- or 16-bit PNG; 16-bit files carry fine
    noise in the low bits, so they stay large (for chunking tests)."""
    pixels = chest_like(size, seed)
    if bits == 16:
        low = np.random.default_rng(seed + 1).integers(0, 256, pixels.shape)
        Image.fromarray((pixels.astype(np.uint16) * 256 + low).astype(np.uint16)).save(path)
    else:
        Image.fromarray(pixels).save(path)
    return path
