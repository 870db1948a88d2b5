"""Augmentations that make sense for chest radiographs.

Small rotations (a patient not quite square to the plate), scale and shift
(different distances and collimation), brightness, contrast and gamma
(different exposures and detectors). Deliberately absent: vertical flips (no
radiograph is upside down), horizontal flips (the heart is on the left; a
mirror image is a different anatomy, dextrocardia), colour jitter (the input
is grey), and crops that could cut a finding out of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; each is drawn uniformly per image."""

    rotate_deg: float = 7.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.15
    gamma: tuple[float, float] = (0.8, 1.25)


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform a batch of images in [0, 1], shape (N, 1, H, W)."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-config.rotate_deg, config.rotate_deg) * math.pi / 180
    scale = uniform(*config.scale)
    tx, ty = uniform(-config.shift, config.shift) * 2, uniform(-config.shift, config.shift) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Border padding: a black wedge at the edge would be a feature no real image has.
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gamma = uniform(*config.gamma).view(n, 1, 1, 1)
    out = out.clamp(0, 1) ** gamma
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(1 - config.contrast, 1 + config.contrast).view(n, 1, 1, 1)
    brightness = uniform(-config.brightness, config.brightness).view(n, 1, 1, 1)
    return ((out - mean) * contrast + mean + brightness).clamp(0, 1)
