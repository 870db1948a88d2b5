"""The GAN and the ablation end to end on a few real images: per-fold GANs
that never see their fold, synthetic images that only train, a report with
every arm, and the synthesize command writing marked files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra is not installed")

from typer.testing import CliRunner  # noqa: E402

from shared.findings import FINDINGS  # noqa: E402
from training.ablation import AblationConfig, Arm, make_synthetic, run_ablation  # noqa: E402
from training.cli import app  # noqa: E402
from training.data import load_pixels, load_sample  # noqa: E402
from training.folds import patient_folds  # noqa: E402
from training.gan.networks import GanArchitecture  # noqa: E402
from training.gan.train_gan import CHECKPOINT, DataLeakError, GanConfig, train_gan  # noqa: E402
from training.synthetic import load_set  # noqa: E402

LIMIT, FOLDS, SIZE = 80, 2, 32
TINY = GanConfig(arch=GanArchitecture(resolution=SIZE, latent=16, channels={4: 16, 8: 16, 16: 8, 32: 8}),
                 images_per_phase=32, final_images=16, batch={4: 16, 8: 16, 16: 16, 32: 16})


@pytest.fixture(scope="module")
def gans(data_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One tiny GAN per fold of the first LIMIT images, each on the other fold only."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gans")
    dataset = load_sample(data_folder, with_teacher=False).subset(np.arange(LIMIT))
    folds = patient_folds(dataset.patients, dataset.labels, FOLDS, 0)
    for fold in range(FOLDS):
        part = dataset.subset(np.flatnonzero(folds != fold))
        train_gan(load_pixels(part, SIZE), part.labels, part.names, root / f"fold{fold}", TINY,
                  grid_findings=["Hernia"])
    return root, data_folder


def test_ablation_scores_every_arm_on_real_images_only(gans: tuple[Path, Path], tmp_path: Path) -> None:
    gan_dir, data = gans
    arms = [Arm("baseline", 1.0), Arm("class-weighted", 10.0), Arm("oversampling", 1.0, oversample=True),
            Arm("synthetic x1", 10.0, synthetic_ratio=1.0)]
    config = AblationConfig(size=SIZE, views=1, epochs=1, folds=FOLDS, seeds=(0,), arms=arms, limit=LIMIT)
    report = run_ablation(data, gan_dir, tmp_path, config, command="test")
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["arms"]) == {a.name for a in arms}
    assert results["meta"]["images"] == LIMIT
    assert sum(results["meta"]["synthetic_per_fold"].values()) > 0
    for arm in results["arms"].values():
        assert 0.0 <= arm["mean_auc"] <= 1.0
        low, high = arm["delta_ci95"]
        assert low <= arm["delta_vs_reference"] <= high
    assert results["arms"]["class-weighted"]["delta_vs_reference"] == 0.0
    assert isinstance(results["decision"]["ship_synthetic"], bool)
    text = report.read_text()
    assert "synthetic x1" in text and "Not for clinical use" in text
    with np.load(tmp_path / "oof.npz") as oof:
        assert all(np.isfinite(oof[k]).all() for k in oof.files)  # every real image scored, no extra rows
        assert all(oof[k].shape[1] == LIMIT for k in oof.files)
    again = run_ablation(data, gan_dir, tmp_path, config, command="test")
    assert json.loads((tmp_path / "results.json").read_text())["arms"] == results["arms"]
    assert again == report


def test_a_gan_that_saw_the_held_out_fold_is_refused(gans: tuple[Path, Path], tmp_path: Path) -> None:
    gan_dir, data = gans
    dataset = load_sample(data, with_teacher=False).subset(np.arange(LIMIT))
    folds = patient_folds(dataset.patients, dataset.labels, FOLDS, 0)
    swapped = tmp_path / "fold0"
    swapped.mkdir()
    (swapped / CHECKPOINT).write_bytes((gan_dir / "fold1" / CHECKPOINT).read_bytes())  # trained on fold 0
    train, held = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    with pytest.raises(DataLeakError):
        make_synthetic(tmp_path, 0, dataset.labels[train], [dataset.names[i] for i in train],
                       [dataset.names[i] for i in held], [7], 1.0, SIZE, seed=0)


def test_synthesize_command_writes_marked_labelled_images(gans: tuple[Path, Path], tmp_path: Path) -> None:
    gan_dir, data = gans
    result = CliRunner().invoke(app, ["synthesize", "--finding", "Edema", "--count", "5", "--checkpoint",
                                      str(gan_dir / "fold0" / CHECKPOINT), "--out", str(tmp_path),
                                      "--data", str(data)])
    assert result.exit_code == 0, result.output
    loaded = load_set(tmp_path)
    assert loaded.pixels.shape == (5, SIZE, SIZE)
    assert loaded.labels[:, [str(f) for f in FINDINGS].index("Edema")].all()
    bad = CliRunner().invoke(app, ["synthesize", "--finding", "Gout", "--checkpoint",
                                   str(gan_dir / "fold0" / CHECKPOINT), "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown finding" in bad.output


def test_classify_trains_with_synthetic_images_from_each_folds_own_gan(gans: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    from rich.console import Console

    from shared.errors import ConfigurationError
    from training.run_classify import ClassifyRequest, run_classify

    gan_dir, data = gans
    request = ClassifyRequest(out=tmp_path / "run", data_root=data, labels_csv=None, images=None, folds=FOLDS,
                              size=SIZE, cut=11, views=1, epochs=1, lr=1e-3, distill=0.0, teacher=False,
                              limit=LIMIT, final=False, seed=0, command="test", synthetic_ratio=1.0,
                              gan_dir=gan_dir)
    summary = run_classify(request, Console(quiet=True))
    assert summary["synthetic_ratio"] == 1.0 and "synthetic images" in str(summary["data"])
    oof = (tmp_path / "run" / "oof.csv").read_text().splitlines()
    assert len(oof) == LIMIT + 1  # one row per real image: synthetic ones are never scored
    request.final, request.out = True, tmp_path / "final"
    with pytest.raises(ConfigurationError, match="all images"):
        run_classify(request, Console(quiet=True))  # no generator trained on all images here
