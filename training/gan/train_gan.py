"""Training the conditional PGGAN: WGAN-GP loss with drift, Adam (0, 0.99),
an exponential moving average of the generator for sampling, checkpoints that
resume exactly, a rich progress bar and a sample grid after every epoch.

Only the images it is given train it: the caller passes the training part of a
patient-wise fold (:func:`training_indices`), and the checkpoint records every
image name so that :func:`assert_disjoint` can prove later that a GAN never saw
the images a classifier is scored on.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from training.gan.networks import Discriminator, GanArchitecture, Generator
from training.gan.schedule import GrowthSchedule

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class DataLeakError(ConfigurationError):
    """A generator would be used beside images it was trained on (an evaluation leak)."""


@dataclass
class GanConfig:
    """Everything that decides a GAN run (stored in its checkpoint)."""

    arch: GanArchitecture = field(default_factory=GanArchitecture)
    images_per_phase: int = 1200
    final_images: int = 2400
    """Images shown at the final resolution after growing has finished."""
    batch: dict[int, int] = field(default_factory=lambda: {4: 32, 8: 32, 16: 32, 32: 16, 64: 16,
                                                            128: 16, 256: 8, 512: 4})
    lr: float = 1e-3
    gp_weight: float = 10.0
    drift: float = 1e-3
    ema_half_life: int = 10_000
    """Images over which the sampling generator's average halves its weight on old
    values; ramped up as 10% of the images seen so far (as StyleGAN does), so that a
    short CPU run is not averaged back towards its random start."""
    seed: int = 0
    checkpoint_every: int = 2000

    @property
    def schedule(self) -> GrowthSchedule:
        return GrowthSchedule(self.arch.resolutions, self.images_per_phase)

    @property
    def total_images(self) -> int:
        return self.schedule.growth_images + self.final_images

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> GanConfig:
        values = dict(data)
        values["arch"] = GanArchitecture.from_dict(values["arch"])  # type: ignore[arg-type]
        values["batch"] = {int(k): int(v) for k, v in dict(values["batch"]).items()}  # type: ignore[call-overload]
        return cls(**values)  # type: ignore[arg-type]


def training_indices(folds: np.ndarray, held_out: int) -> np.ndarray:
    """The images a GAN for fold ``held_out`` may train on: every other fold."""
    return np.flatnonzero(folds != held_out)


def assert_disjoint(trained_on: Sequence[str], evaluated: Sequence[str]) -> None:
    """Raise :class:`DataLeakError` when a GAN's training images meet an evaluation set."""
    overlap = set(trained_on) & set(evaluated)
    if overlap:
        raise DataLeakError(f"the generator was trained on {len(overlap)} image(s) of the evaluation "
                            f"set, e.g. {sorted(overlap)[:3]}")


def sampling_weights(labels: np.ndarray) -> np.ndarray:
    """Draw weights that show rare findings more often: each image weighs
    1/sqrt(frequency) of its rarest finding (no finding counts as a class)."""
    positives = np.concatenate([labels, (labels.sum(1) == 0)[:, None]], axis=1).astype(bool)
    frequency = positives.mean(0).clip(min=1 / len(labels))
    weights = np.where(positives, 1 / np.sqrt(frequency), 0).max(1)
    return weights / weights.sum()


@dataclass
class GanState:
    """The networks and optimisers of one run, and how far it has come."""

    config: GanConfig
    generator: Generator
    discriminator: Discriminator
    ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    seen: int = 0
    names: list[str] = field(default_factory=list)

    @classmethod
    def fresh(cls, config: GanConfig, names: list[str]) -> GanState:
        torch.manual_seed(config.seed)
        generator, discriminator = Generator(config.arch), Discriminator(config.arch)
        ema = copy.deepcopy(generator).eval().requires_grad_(False)
        return cls(config, generator, discriminator, ema,
                   torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.0, 0.99), eps=1e-8),
                   torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(0.0, 0.99), eps=1e-8),
                   0, list(names))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save({"config": self.config.to_dict(), "generator": self.generator.state_dict(),
                    "discriminator": self.discriminator.state_dict(), "ema": self.ema.state_dict(),
                    "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                    "seen": self.seen, "names": self.names, "rng": torch.get_rng_state()}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> GanState:
        data = torch.load(path, map_location="cpu", weights_only=False)
        state = cls.fresh(GanConfig.from_dict(data["config"]), data["names"])
        state.generator.load_state_dict(data["generator"])
        state.discriminator.load_state_dict(data["discriminator"])
        state.ema.load_state_dict(data["ema"])
        state.opt_g.load_state_dict(data["opt_g"])
        state.opt_d.load_state_dict(data["opt_d"])
        state.seen = int(data["seen"])
        torch.set_rng_state(data["rng"])
        return state


def load_generator(path: Path) -> tuple[Generator, GanConfig, list[str]]:
    """The averaged generator of a checkpoint (for sampling), its config and training images."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    config = GanConfig.from_dict(data["config"])
    generator = Generator(config.arch)
    generator.load_state_dict(data["ema"])
    return generator.eval(), config, list(data["names"])


def _reals(pixels: torch.Tensor, resolution: int, level: int, alpha: float) -> torch.Tensor:
    """Real images at the stage's resolution in [-1, 1], faded like the generator's output."""
    x = pixels.float().unsqueeze(1) / 127.5 - 1.0
    if x.shape[-1] != resolution:
        x = F.adaptive_avg_pool2d(x, resolution)
    if level and alpha < 1.0:
        x = alpha * x + (1 - alpha) * F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    return x


def _gradient_penalty(critic: Discriminator, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                      level: int, alpha: float) -> torch.Tensor:
    mix = torch.rand(len(real), 1, 1, 1, device=real.device)
    x = (mix * real + (1 - mix) * fake).requires_grad_(True)
    scores = critic(x, labels, level, alpha)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def ema_beta(batch: int, seen: int, half_life: int) -> float:
    """The averaging weight on the old value for one step of ``batch`` images."""
    return 0.5 ** (batch / max(min(half_life, 0.1 * seen), 1.0))


def train_step(state: GanState, pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """One critic and one generator update on a batch of real images (uint8, full size)."""
    config = state.config
    stage = config.schedule.at(state.seen)
    real = _reals(pixels, stage.resolution, stage.level, stage.alpha)
    z = torch.randn(len(real), config.arch.latent, device=real.device)
    with torch.no_grad():
        fake = state.generator(z, labels, stage.level, stage.alpha)
    d_real = state.discriminator(real, labels, stage.level, stage.alpha)
    d_fake = state.discriminator(fake, labels, stage.level, stage.alpha)
    gp = _gradient_penalty(state.discriminator, real, fake, labels, stage.level, stage.alpha)
    d_loss = d_fake.mean() - d_real.mean() + config.gp_weight * gp + config.drift * d_real.pow(2).mean()
    state.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    state.opt_d.step()

    z = torch.randn(len(real), config.arch.latent, device=real.device)
    g_loss = -state.discriminator(state.generator(z, labels, stage.level, stage.alpha), labels,
                                  stage.level, stage.alpha).mean()
    state.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    state.opt_g.step()
    state.seen += len(real)
    beta = ema_beta(len(real), state.seen, config.ema_half_life)
    with torch.no_grad():
        for averaged, live in zip(state.ema.parameters(), state.generator.parameters(), strict=True):
            averaged.lerp_(live, 1 - beta)
    return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()), "gp": float(gp.detach()),
            "resolution": stage.resolution, "alpha": stage.alpha}


@torch.no_grad()
def sample(generator: Generator, labels: torch.Tensor, *, level: int | None = None,
           seed: int = 0) -> np.ndarray:
    """Images for ``labels`` (n, 14) as uint8 (n, r, r) from the final (or given) level."""
    gen = torch.Generator().manual_seed(seed)
    level = len(generator.arch.resolutions) - 1 if level is None else level
    z = torch.randn(len(labels), generator.arch.latent, generator=gen)
    device = next(generator.parameters()).device
    out = generator(z.to(device), labels.to(device), level).cpu()
    return ((out.squeeze(1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def grid_labels(findings: Sequence[str], per_row: int) -> torch.Tensor:
    """One row of ``per_row`` images per finding, each with only that label set."""
    rows = []
    for name in findings:
        vector = torch.zeros(len(FINDINGS))
        vector[[str(f) for f in FINDINGS].index(name)] = 1
        rows.append(vector.repeat(per_row, 1))
    return torch.cat(rows)


def save_grid(images: np.ndarray, per_row: int, path: Path, upscale_to: int = 96) -> None:
    """Tile (n, r, r) uint8 images ``per_row`` wide into one PNG (nearest upscaling)."""
    n, size = len(images), images.shape[-1]
    scale = max(1, upscale_to // size)
    tiles = np.kron(images, np.ones((scale, scale), dtype=np.uint8)) if scale > 1 else images
    rows = -(-n // per_row)
    side = tiles.shape[-1]
    canvas = np.zeros((rows * side, per_row * side), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, per_row)
        canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


def train_gan(pixels: np.ndarray, labels: np.ndarray, names: list[str], out: Path, config: GanConfig,
              *, grid_findings: Sequence[str], console: Console | None = None,
              resume: bool = True, stop_after: int | None = None) -> GanState:
    """Train (or resume) a GAN on ``pixels`` (n, R, R) uint8 with ``labels`` (n, 14).

    Writes ``checkpoint.pt`` every ``checkpoint_every`` images and at the end,
    ``log.jsonl`` and a sample grid per epoch (one pass over the images) into
    ``out``. ``stop_after`` ends early after that many images in total (tests).
    """
    if pixels.shape[-1] != config.arch.resolution:
        raise ConfigurationError(f"images are {pixels.shape[-1]} px; the GAN is built for "
                                 f"{config.arch.resolution} px")
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT
    if resume and path.is_file():
        state = GanState.load(path)
        if state.names != list(names):
            raise ConfigurationError(f"{path} was trained on other images; use another --out")
        logger.info("resuming GAN at %d images", state.seen)
    else:
        state = GanState.fresh(config, names)
    config = state.config
    weights = torch.as_tensor(sampling_weights(labels))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for network in (state.generator, state.discriminator, state.ema):
        network.to(device)
    for optimiser in (state.opt_g, state.opt_d):  # moments restored from a checkpoint follow
        for values in optimiser.state.values():
            for key, value in values.items():
                if isinstance(value, torch.Tensor) and key != "step":
                    values[key] = value.to(device)
    data, targets = torch.as_tensor(pixels).to(device), torch.as_tensor(labels).to(device)
    fixed = grid_labels(grid_findings, 6)
    end = min(config.total_images, stop_after or config.total_images)
    epoch = len(pixels)
    started = time.perf_counter()
    columns = (TextColumn("[bold]GAN[/] {task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[losses]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=console is None) as bar, \
            (out / "log.jsonl").open("a", encoding="utf-8") as log:
        task = bar.add_task("gan", total=end, completed=state.seen, stage="", losses="")
        last_checkpoint = state.seen
        while state.seen < end:
            stage = config.schedule.at(state.seen)
            batch = config.batch[stage.resolution]
            index = torch.multinomial(weights, batch, replacement=True).to(device)
            before = state.seen
            row = train_step(state, data[index], targets[index])
            bar.update(task, completed=state.seen, stage=f"{stage.resolution}px a={stage.alpha:.2f}",
                       losses=f"D {row['d_loss']:.2f} G {row['g_loss']:.2f}")
            if state.seen // epoch != before // epoch:
                row.update(seen=state.seen, seconds=time.perf_counter() - started)
                log.write(json.dumps(row) + "\n")
                log.flush()
                level = config.schedule.at(state.seen - 1).level
                save_grid(sample(state.ema, fixed, level=level), 6,
                          out / "grids" / f"grid-{state.seen:07d}.png")
            if state.seen - last_checkpoint >= config.checkpoint_every:
                state.save(path)
                last_checkpoint = state.seen
    state.save(path)
    save_grid(sample(state.ema, fixed), 6, out / "grids" / "final.png")
    return state
