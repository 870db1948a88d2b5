"""Class-conditional PGGAN generator and discriminator for grey chest X-rays.

Conditioning is on the 14-long multi-hot label vector (a chest X-ray may show
several findings at once): the generator concatenates a learned embedding of
the labels to the latent, the discriminator adds a projection term
``<embed(y), features>`` to its score (Miyato & Koyama 2018), which works for
multi-hot vectors where an auxiliary classifier's softmax would not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from shared.findings import FINDINGS
from training.gan.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm


def _default_channels() -> dict[int, int]:
    # Sized for a 2-core CPU (~0.5 M parameters per network); a GPU run can pass wider ones.
    return {4: 64, 8: 64, 16: 64, 32: 32, 64: 16, 128: 8, 256: 8, 512: 4}


@dataclass
class GanArchitecture:
    """Sizes of both networks (recorded in every checkpoint)."""

    resolution: int = 128
    latent: int = 128
    classes: int = len(FINDINGS)
    channels: dict[int, int] = field(default_factory=_default_channels)

    @property
    def resolutions(self) -> tuple[int, ...]:
        out, size = [], 4
        while size <= self.resolution:
            out.append(size)
            size *= 2
        return tuple(out)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> GanArchitecture:
        channels = {int(k): int(v) for k, v in dict(data["channels"]).items()}  # type: ignore[call-overload]
        return cls(resolution=int(data["resolution"]), latent=int(data["latent"]),  # type: ignore[call-overload]
                   classes=int(data["classes"]), channels=channels)  # type: ignore[call-overload]


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


class Generator(nn.Module):
    """(latent, labels) -> image in [-1, 1] (not clamped) at the stage's resolution."""

    def __init__(self, arch: GanArchitecture) -> None:
        super().__init__()
        self.arch = arch
        c0 = arch.channels[4]
        self.embed = EqualizedLinear(arch.classes, arch.latent, gain=1.0)
        self.norm = PixelNorm()
        self.dense = EqualizedLinear(2 * arch.latent, c0 * 16, gain=1.0)
        self.first = nn.Sequential(_lrelu(), PixelNorm(), EqualizedConv2d(c0, c0, 3, 1), _lrelu(),
                                   PixelNorm())
        self.blocks = nn.ModuleList()
        self.to_image = nn.ModuleList([EqualizedConv2d(c0, 1, 1, gain=1.0)])
        for low, high in zip(arch.resolutions, arch.resolutions[1:], strict=False):
            cin, cout = arch.channels[low], arch.channels[high]
            self.blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                EqualizedConv2d(cin, cout, 3, 1), _lrelu(), PixelNorm(),
                EqualizedConv2d(cout, cout, 3, 1), _lrelu(), PixelNorm()))
            self.to_image.append(EqualizedConv2d(cout, 1, 1, gain=1.0))

    def forward(self, z: torch.Tensor, labels: torch.Tensor, level: int, alpha: float = 1.0) -> torch.Tensor:
        code = torch.cat([self.norm(z), self.norm(self.embed(labels.float()))], dim=1)
        x = self.first(self.dense(code).reshape(len(z), -1, 4, 4))
        previous = x
        for block in self.blocks[:level]:
            previous, x = x, block(x)
        image = self.to_image[level](x)
        if level and alpha < 1.0:
            old = F.interpolate(self.to_image[level - 1](previous), scale_factor=2, mode="nearest")
            image = alpha * image + (1 - alpha) * old
        return image


class Discriminator(nn.Module):
    """(image, labels) -> an unbounded realness score (WGAN critic) per image."""

    def __init__(self, arch: GanArchitecture) -> None:
        super().__init__()
        self.arch = arch
        c0 = arch.channels[4]
        self.from_image = nn.ModuleList([nn.Sequential(EqualizedConv2d(1, c0, 1), _lrelu())])
        self.blocks = nn.ModuleList()
        for low, high in zip(arch.resolutions, arch.resolutions[1:], strict=False):
            cin, cout = arch.channels[high], arch.channels[low]
            self.from_image.append(nn.Sequential(EqualizedConv2d(1, cin, 1), _lrelu()))
            self.blocks.append(nn.Sequential(
                EqualizedConv2d(cin, cin, 3, 1), _lrelu(),
                EqualizedConv2d(cin, cout, 3, 1), _lrelu(), nn.AvgPool2d(2)))
        self.final = nn.Sequential(MinibatchStdDev(), EqualizedConv2d(c0 + 1, c0, 3, 1), _lrelu(),
                                   EqualizedConv2d(c0, c0, 4), _lrelu(), nn.Flatten())
        self.score = EqualizedLinear(c0, 1, gain=1.0)
        self.embed = EqualizedLinear(arch.classes, c0, gain=1.0)

    def forward(self, image: torch.Tensor, labels: torch.Tensor, level: int,
                alpha: float = 1.0) -> torch.Tensor:
        x = self.from_image[level](image)
        if level:
            x = self.blocks[level - 1](x)
            if alpha < 1.0:
                x = alpha * x + (1 - alpha) * self.from_image[level - 1](F.avg_pool2d(image, 2))
            for block in reversed(self.blocks[:level - 1]):
                x = block(x)
        features = self.final(x)
        projection = (self.embed(labels.float()) * features).sum(dim=1, keepdim=True)
        return (self.score(features) + projection).squeeze(1)
