"""The conditional PGGAN: growth schedule, network shapes, fading, conditional
sampling, checkpoints and resume, and the fold guard against leaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra is not installed")

import torch.nn.functional as F  # noqa: E402, N812

from shared.errors import ConfigurationError  # noqa: E402
from shared.findings import FINDINGS  # noqa: E402
from training.gan.layers import MinibatchStdDev, PixelNorm  # noqa: E402
from training.gan.networks import Discriminator, GanArchitecture, Generator  # noqa: E402
from training.gan.schedule import GrowthSchedule  # noqa: E402
from training.gan.train_gan import (  # noqa: E402
    DataLeakError,
    GanConfig,
    GanState,
    assert_disjoint,
    grid_labels,
    sample,
    sampling_weights,
    train_gan,
    training_indices,
)
from training.synthesize import condition_vectors  # noqa: E402

SMALL = GanArchitecture(resolution=32, latent=16, channels={4: 16, 8: 16, 16: 8, 32: 8})


def test_schedule_fades_in_each_resolution_then_holds_it() -> None:
    schedule = GrowthSchedule((4, 8, 16), images_per_phase=100)
    assert schedule.at(0).resolution == 4 and schedule.at(99).alpha == 1.0
    fading = schedule.at(150)
    assert (fading.resolution, fading.level, fading.fading) == (8, 1, True)
    assert fading.alpha == pytest.approx(0.5)
    assert schedule.at(250).resolution == 8 and not schedule.at(250).fading
    assert schedule.at(300).alpha == 0.0 and schedule.at(300).resolution == 16
    assert schedule.at(10_000).resolution == 16 and schedule.at(10_000).alpha == 1.0
    assert schedule.growth_images == 500
    alphas = [schedule.at(i).alpha for i in range(100, 200)]
    assert alphas == sorted(alphas)


@pytest.mark.parametrize("resolutions", [(8, 16), (4, 12), ()])
def test_schedule_rejects_bad_resolutions(resolutions: tuple[int, ...]) -> None:
    with pytest.raises(ConfigurationError):
        GrowthSchedule(resolutions, 10)


def test_generator_and_discriminator_shapes_at_every_level() -> None:
    generator, critic = Generator(SMALL), Discriminator(SMALL)
    z, labels = torch.randn(4, SMALL.latent), torch.zeros(4, 14)
    for level, size in enumerate(SMALL.resolutions):
        for alpha in (0.3, 1.0):
            image = generator(z, labels, level, alpha)
            assert image.shape == (4, 1, size, size)
            assert critic(image, labels, level, alpha).shape == (4,)


def test_fade_in_at_alpha_zero_is_the_previous_resolution_upsampled() -> None:
    generator, critic = Generator(SMALL), Discriminator(SMALL)
    z, labels = torch.randn(3, SMALL.latent), torch.eye(14)[:3]
    with torch.no_grad():
        new = generator(z, labels, 2, alpha=0.0)
        old = F.interpolate(generator(z, labels, 1), scale_factor=2, mode="nearest")
        torch.testing.assert_close(new, old)
        image = torch.randn(4, 1, 16, 16)
        labels4 = torch.eye(14)[:4]
        torch.testing.assert_close(critic(image, labels4, 2, alpha=0.0),
                                   critic(F.avg_pool2d(image, 2), labels4, 1, alpha=1.0))


def test_pixel_norm_and_minibatch_stddev() -> None:
    x = torch.randn(8, 5, 3, 3) * 7
    assert torch.allclose(PixelNorm()(x).pow(2).mean(dim=1), torch.ones(8, 3, 3), atol=1e-4)
    out = MinibatchStdDev()(x)
    assert out.shape == (8, 6, 3, 3)
    same = MinibatchStdDev()(torch.ones(8, 5, 3, 3))
    assert torch.allclose(same[:, -1], torch.full((8, 3, 3), 1e-4), atol=1e-3)


def test_labels_condition_the_generator() -> None:
    generator = Generator(SMALL)
    hernia = grid_labels(["Hernia"], 2)
    edema = grid_labels(["Edema"], 2)
    assert hernia[:, [str(f) for f in FINDINGS].index("Hernia")].all()
    a, b = sample(generator, hernia, seed=3), sample(generator, edema, seed=3)
    assert a.dtype == np.uint8 and a.shape == (2, 32, 32)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, sample(generator, hernia, seed=3))


def test_condition_vectors_keep_the_finding_and_its_company() -> None:
    pool = np.zeros((4, 14), dtype=np.uint8)
    pool[0, [0, 7]] = 1  # Atelectasis + Hernia
    pool[1, 7] = 1       # Hernia alone
    pool[2, 0] = 1       # no Hernia: never drawn
    vectors = condition_vectors("Hernia", pool, 50, seed=0)
    assert vectors[:, 7].all()
    assert {tuple(np.flatnonzero(v)) for v in vectors} == {(0, 7), (7,)}
    alone = condition_vectors("Hernia", None, 3, seed=0)
    assert (alone.sum(1) == 1).all() and alone[:, 7].all()
    with pytest.raises(ConfigurationError):
        condition_vectors("Broken heart", pool, 1, seed=0)


def test_rare_findings_are_drawn_more_often() -> None:
    labels = np.zeros((100, 14), dtype=np.uint8)
    labels[:5, 7] = 1
    labels[5:60, 0] = 1
    weights = sampling_weights(labels)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] > weights[10] and weights[0] > weights[99]


def test_gan_folds_exclude_the_held_out_images() -> None:
    folds = np.array([0, 1, 2, 0, 1, 2, 2])
    assert training_indices(folds, 2).tolist() == [0, 1, 3, 4]
    assert_disjoint(["a", "b"], ["c"])
    with pytest.raises(DataLeakError, match="1 image"):
        assert_disjoint(["a", "b"], ["b", "c"])


def test_training_checkpoints_resumes_and_writes_grids(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = GanConfig(arch=SMALL, images_per_phase=24, final_images=16, batch={4: 8, 8: 8, 16: 8, 32: 8},
                       checkpoint_every=32)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 2, (12, 14)).astype(np.uint8)
    names = [f"img{i}.png" for i in range(12)]
    first = train_gan(pixels, labels, names, tmp_path, config, grid_findings=["Hernia"], stop_after=64)
    assert first.seen == 64
    resumed = train_gan(pixels, labels, names, tmp_path, config, grid_findings=["Hernia"])
    assert resumed.seen == config.total_images
    assert GanState.load(tmp_path / "checkpoint.pt").names == names
    assert (tmp_path / "grids" / "final.png").is_file()
    assert len(list((tmp_path / "grids").glob("grid-*.png"))) >= 3
    assert (tmp_path / "log.jsonl").read_text().count("\n") >= 3
    with pytest.raises(ConfigurationError, match="other images"):
        train_gan(pixels, labels, [f"x{i}" for i in range(12)], tmp_path, config, grid_findings=["Hernia"])


def test_generator_average_ramps_up_with_images_seen() -> None:
    from training.gan.train_gan import ema_beta

    early, late = ema_beta(16, 80, 10_000), ema_beta(16, 1_000_000, 10_000)
    assert early < 0.5 < late < 1.0
    assert late == pytest.approx(0.5 ** (16 / 10_000))
