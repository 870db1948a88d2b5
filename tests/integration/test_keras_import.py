"""``goldenhour models import-keras``: a small Keras classifier, trained here on
real NIH images (RGB, ImageNet normalisation, its outputs in its own label
order), converted through OpenVINO's converter, added to a manifest and run by
the edge's ``goldenhour diagnose``, which must agree with Keras."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.findings import FINDINGS
from shared.manifest import load_manifest, sha256_file

pytestmark = pytest.mark.realdata
REPO = Path(__file__).parents[2]
SIZE = 64
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed: pip install 'goldenhour[keras]'")
keras = pytest.importorskip("keras", reason="Keras is not installed: pip install 'goldenhour[keras]'")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=env)


def _keras_input(path: Path) -> np.ndarray:
    """What this Keras model expects: RGB, resized, /255, ImageNet mean and std."""
    with Image.open(path) as image:
        grey = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    rgb = np.repeat(np.asarray(grey, np.float32)[:, :, None], 3, axis=-1) / 255.0
    return (rgb - MEAN) / STD


@pytest.fixture(scope="module")
def keras_model(data_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """A .keras file trained for a few epochs on 24 real images; its label order is shuffled."""
    sample = data_folder / "nih-cxr14-sample"
    with (sample / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:24]
    order = [str(f) for f in FINDINGS]
    random.Random(7).shuffle(order)
    x = np.stack([_keras_input(sample / "images" / row["Image Index"]) for row in rows])
    y = np.array([[float(name in row["Finding Labels"].split("|")) for name in order] for row in rows],
                 np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(14, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    folder = tmp_path_factory.mktemp("keras")
    path = folder / "chexnet-small.keras"
    model.save(path)
    parity = folder / "parity"
    parity.mkdir()
    for row in rows[-6:]:
        (parity / row["Image Index"]).write_bytes((sample / "images" / row["Image Index"]).read_bytes())
    return path, order, parity


def test_a_keras_model_reaches_the_edge_with_parity(keras_model: tuple[Path, list[str], Path],
                                                     data_folder: Path, tmp_path: Path) -> None:
    path, order, parity = keras_model
    models = tmp_path / "models"
    thresholds = [round(0.3 + 0.02 * i, 2) for i in range(14)]  # in the model's label order
    result = _cli("models", "import-keras", str(path), "--name", "chexnet-small", "--labels", ",".join(order),
                  "--input", "imagenet", "--parity-images", str(parity), "--models-dir", str(models),
                  "--thresholds", ",".join(map(str, thresholds)))
    assert result.returncode == 0, result.stdout + result.stderr
    entry = load_manifest(models).find("chexnet-small")
    assert entry.labels == [str(f) for f in FINDINGS] and entry.input.size == SIZE
    assert (entry.input.channels, entry.input.layout) == (1, "NCHW")
    assert entry.thresholds == [thresholds[order.index(str(f))] for f in FINDINGS]
    for file in entry.files:
        assert sha256_file(models / file.path) == file.sha256 and file.format.startswith("openvino")
    parity_metric = next(m for m in entry.metrics if m.name == "parity_max_abs_diff_vs_keras")
    assert 0 <= parity_metric.value <= 0.01 and "6 real X-rays" in parity_metric.data
    assert "import-keras" in entry.command

    # The edge runs it, and agrees with Keras on an image the parity check did not see.
    model = keras.models.load_model(path)
    image = data_folder / "nih-cxr14-sample" / "images" / sorted(
        p.name for p in (data_folder / "nih-cxr14-sample" / "images").glob("*.png"))[40]
    expected = np.asarray(model(_keras_input(image)[None]))[0]
    diagnosed = _cli("diagnose", str(image), "--json", "--models-dir", str(models),
                     "--model", "chexnet-small")
    assert diagnosed.returncode == 0, diagnosed.stderr
    findings = json.loads(diagnosed.stdout)["findings"]
    for score in findings:
        assert score["probability"] == pytest.approx(expected[order.index(score["finding"])], abs=0.01)
        assert score["threshold"] == thresholds[order.index(score["finding"])]
    assert "tensorflow" not in diagnosed.stderr.lower()


def test_bad_labels_or_normalisation_add_nothing(keras_model: tuple[Path, list[str], Path],
                                                 tmp_path: Path) -> None:
    path, order, parity = keras_model
    models = tmp_path / "models"
    wrong = _cli("models", "import-keras", str(path), "--name", "bad", "--labels", ",".join(order[:13]),
                 "--input", "imagenet", "--parity-images", str(parity), "--models-dir", str(models))
    assert wrong.returncode == 1 and "missing" in wrong.stderr and order[13] in wrong.stderr
    garbled = _cli("models", "import-keras", str(path), "--name", "bad", "--labels", ",".join(order),
                   "--input", "mean=zero", "--parity-images", str(parity), "--models-dir", str(models))
    assert garbled.returncode == 1 and "--input" in garbled.stderr
    assert not (models / "manifest.json").exists()


def test_the_edge_runtime_does_not_import_tensorflow() -> None:
    code = ("import sys; from edge_agent.pipeline import build_pipeline; import edge_agent.diagnose_cli, "
            "edge_agent.batch; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr
