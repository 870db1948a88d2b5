"""Training one classifier: cache the frozen trunk's outputs for a few
augmented views of every image, then fine-tune the top and head on them.

Why cached views: on a 2-core CPU a full fine-tune of EfficientNet-Lite0 at
384 px costs ~0.4 s per image per epoch; the trunk (blocks 0..cut-1, kept at
its ImageNet weights) is most of that. Running it once per view and training
the top on the cache is ~10x cheaper per epoch, so the same hour buys
cross-validation, more epochs and a higher resolution. With ``cut=0`` the
whole network trains (used for backbones without offline weights).

Runs unchanged under ``torchrun`` (DDP; gloo on CPU, nccl on GPUs): each rank
trains on its shard of every batch and gradients are averaged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from training.augment import AugmentConfig, augment
from training.box_supervision import box_attention_loss
from training.metrics import mean_auc
from training.models import ChestClassifier

logger = logging.getLogger(__name__)

MEAN, STD = 127.0, 128.0
"""The canonical input contract: (pixel - 127) / 128 on the 8-bit scale."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (recorded in the manifest)."""

    backbone: str = "efficientnet-lite0"
    size: int = 384
    cut: int = 11
    views: int = 6
    epochs: int = 12
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pos_weight_cap: float = 10.0
    distill: float = 0.0
    """Weight of the teacher's soft labels (0 = off) where the teacher has a prediction."""
    patience: int = 4
    seed: int = 0
    box_loss: float = 0.0
    """Weight of the radiologist-box attention loss on boxed images (0 = off;
    ``training/box_supervision.py``)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy; return a generator for augmentation draws."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def cache_views(model: ChestClassifier, pixels: np.ndarray, config: TrainConfig,
                progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Trunk outputs for ``config.views`` views of every image, (V, N, C, h, w) float16.

    View 0 is the image as is (used for validation and prediction); the rest
    are random augmentations drawn from ``config.seed``.
    """
    generator = torch.Generator().manual_seed(config.seed + 1)
    model.trunk.eval().to(device())
    run_trunk = _openvino_trunk(model.trunk, config.size) if device().type == "cpu" else None
    if run_trunk is None:
        def run_trunk(batch: torch.Tensor) -> torch.Tensor:
            return model.trunk(batch.to(device()))
    out: torch.Tensor | None = None
    chunk = 32
    total = config.views * len(pixels)
    for view in range(config.views):
        for start in range(0, len(pixels), chunk):
            batch = torch.as_tensor(pixels[start:start + chunk]).float().unsqueeze(1) / 255.0
            if view:
                batch = augment(batch, config.augment, generator)
            features = run_trunk((batch * 255.0 - MEAN) / STD).half().cpu()
            if out is None:
                out = torch.empty((config.views, len(pixels), *features.shape[1:]), dtype=torch.float16)
            out[view, start:start + len(batch)] = features
            if progress:
                progress(view * len(pixels) + start + len(batch), total)
    assert out is not None
    return out


def _openvino_trunk(trunk: nn.Module, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The frozen trunk compiled by OpenVINO (f32), or None when it cannot be.

    On a CPU, OpenVINO ran this network about 8x faster than torch eager here, and the
    trunk never trains, so its outputs are the same numbers (to ~1e-5) sooner.
    """
    if isinstance(trunk, nn.Identity):
        return None
    try:
        import openvino as ov
    except ImportError:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trunk.onnx"
        torch.onnx.export(trunk, (torch.zeros(1, 1, size, size),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                              "PERFORMANCE_HINT": "THROUGHPUT"})

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(compiled(batch.numpy())[0].copy())

    logger.info("trunk features computed with OpenVINO")
    return run


def pos_weights(labels: np.ndarray, cap: float) -> torch.Tensor:
    """neg/pos per finding, capped: rare findings count more, within reason."""
    positives = labels.sum(0).clip(min=1)
    return torch.tensor(np.minimum((len(labels) - positives) / positives, cap), dtype=torch.float32)


def _loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor,
          distill: float) -> torch.Tensor:
    hard = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)
    if distill <= 0:
        return hard
    has = ~torch.isnan(teacher[:, 0])
    if not has.any():
        return hard
    soft = F.binary_cross_entropy_with_logits(logits[has], teacher[has])
    share = has.float().mean()
    return (1 - distill * share) * hard + distill * share * soft


@torch.no_grad()
def predict_cached(model: ChestClassifier, features: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Logits for cached trunk outputs (N, C, h, w)."""
    model.eval()
    out = []
    for start in range(0, len(features), batch):
        logits, _ = model.forward_top(features[start:start + batch].float().to(device()))
        out.append(logits.float().cpu())
    return torch.cat(out).numpy()


@dataclass
class FitResult:
    """What one training run produced."""

    best_epoch: int
    best_val_auc: float | None
    history: list[dict[str, float]]
    seconds: float


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def fit(model: ChestClassifier, cache: torch.Tensor, labels: np.ndarray, teacher: np.ndarray | None,
        train_idx: np.ndarray, val_idx: np.ndarray | None, config: TrainConfig,
        log_path: Path | None = None, on_epoch: Callable[[dict[str, float]], None] | None = None,
        box_masks: torch.Tensor | None = None) -> FitResult:
    """Train the top and head on cached views of ``train_idx``.

    With ``val_idx``, keeps the weights of the epoch with the best mean
    validation AUC and stops after ``config.patience`` epochs without gain;
    without it, trains ``config.epochs`` epochs and keeps the last. With
    ``box_masks`` (N, 14, h, w) and ``config.box_loss`` > 0, boxed training
    images also pull their class activation maps into their boxes.
    """
    rank, world = _distributed()
    generator = seed_everything(config.seed)
    dev = device()
    model.to(dev)
    trainable = [p for name, p in model.named_parameters() if not name.startswith("trunk.")]
    for name, parameter in model.named_parameters():
        parameter.requires_grad = not name.startswith("trunk.")
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(_TopOnly(model))
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, math.ceil(len(train_idx) / config.batch)) * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps,
                                                    pct_start=0.15)
    weight = pos_weights(labels[train_idx], config.pos_weight_cap).to(dev)
    y_all = torch.tensor(labels, dtype=torch.float32)
    t_all = torch.full_like(y_all, float("nan")) if teacher is None else torch.tensor(teacher)
    use_amp = dev.type == "cuda"
    best_auc, best_epoch, best_state, waited = -1.0, 0, None, 0
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        model.trunk.eval()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        views = torch.randint(0, cache.shape[0], (len(order),), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(order), config.batch):
            if len(order[start:start + config.batch]) < 2 * world:
                # Every rank skips the same short tail (same seed, same order), so DDP
                # never waits for a rank that has no sample; BatchNorm needs two.
                continue
            index = order[start:start + config.batch][rank::world]
            chosen = views[start:start + config.batch][rank::world]
            x = cache[chosen, torch.as_tensor(index)].float().to(dev)
            with torch.autocast(dev.type, enabled=use_amp):
                logits, cam = net(x) if world > 1 else model.forward_top(x)
                loss = _loss(logits.float(), y_all[index].to(dev), t_all[index].to(dev), weight,
                             config.distill)
                if box_masks is not None and config.box_loss > 0:
                    loss = loss + config.box_loss * box_attention_loss(
                        cam, box_masks[torch.as_tensor(index)].to(dev))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item()
            batches += 1
        row: dict[str, float] = {"epoch": epoch, "loss": total / max(batches, 1),
                                 "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - started}
        if val_idx is not None and len(val_idx):
            auc = mean_auc(labels[val_idx], predict_cached(model, cache[0, torch.as_tensor(val_idx)]))
            row["val_auc"] = auc
            if auc > best_auc:
                best_auc, best_epoch, waited = auc, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if log_path is not None and rank == 0:
            with log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
        if val_idx is not None and waited >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    return FitResult(best_epoch, best_auc if best_state is not None else None, history,
                     time.perf_counter() - started)


class _TopOnly(nn.Module):
    """DDP wraps only what trains (the trunk is frozen and may be absent from the graph)."""

    def __init__(self, model: ChestClassifier) -> None:
        super().__init__()
        self.top, self.head = model.top, model.head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.top(x))


def init_distributed() -> bool:
    """Join a ``torchrun`` job when its environment is set; True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True
