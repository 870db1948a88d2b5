"""Synthetic images that the edge's chest X-ray guard accepts, for tests that
need a case but not a real patient: the guard's own average chest X-ray
(its template), enlarged, with grain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent.ood import DEFAULT_PARAMETERS


def chest_like(size: int = 512, seed: int = 0, grain: float = 4.0) -> np.ndarray:
    """An 8-bit grey (size, size) array shaped like a frontal chest radiograph."""
    template = np.asarray(DEFAULT_PARAMETERS.template, np.float32)
    scaled = ((template - template.min()) / np.ptp(template) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(scaled).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    noise = np.random.default_rng(seed).normal(0, grain, big.shape)
    return np.clip(big * 0.85 + 20 + noise, 0, 255).astype(np.uint8)


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
