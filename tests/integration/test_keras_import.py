"""``goldenhour train import-keras``: a small Keras classifier, trained here on
real NIH images (RGB, ImageNet normalisation, its outputs in its own label
order), converted through OpenVINO's converter, added to a manifest and run by
the edge's ``goldenhour diagnose``, which must agree with Keras."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.findings import FINDINGS
from shared.manifest import load_manifest, sha256_file

pytestmark = pytest.mark.realdata
REPO = Path(__file__).parents[2]
SIZE = 64

# TensorFlow is never imported here (see tests/keras_worker.py): only looked for.
if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
    pytest.skip("TensorFlow is not installed: pip install 'goldenhour[keras]'", allow_module_level=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=env)


def _check_image(data_folder: Path) -> Path:
    images = data_folder / "nih-cxr14-sample" / "images"
    return images / sorted(p.name for p in images.glob("*.png"))[40]


@pytest.fixture(scope="module")
def keras_model(data_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A .keras file trained (in its own process) for a few epochs on 24 real images; its
    label order is shuffled; with Keras's own prediction for the check image."""
    folder = tmp_path_factory.mktemp("keras")
    result = subprocess.run([sys.executable, "-m", "tests.keras_worker", str(data_folder), str(folder),
                             str(_check_image(data_folder))], capture_output=True, text=True, cwd=REPO,
                            timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_keras_model_reaches_the_edge_with_parity(keras_model: dict[str, Any], data_folder: Path,
                                                     tmp_path: Path) -> None:
    path, order, parity = keras_model["model"], keras_model["order"], keras_model["parity"]
    models = tmp_path / "models"
    thresholds = [round(0.3 + 0.02 * i, 2) for i in range(14)]  # in the model's label order
    result = _cli("train", "import-keras", str(path), "--name", "chexnet-small", "--labels", ",".join(order),
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
    image = _check_image(data_folder)
    expected = keras_model["expected"]
    diagnosed = _cli("diagnose", str(image), "--json", "--models-dir", str(models),
                     "--model", "chexnet-small")
    assert diagnosed.returncode == 0, diagnosed.stderr
    findings = json.loads(diagnosed.stdout)["findings"]
    for score in findings:
        assert score["probability"] == pytest.approx(expected[order.index(score["finding"])], abs=0.01)
        assert score["threshold"] == thresholds[order.index(score["finding"])]
    assert "tensorflow" not in diagnosed.stderr.lower()


def test_bad_labels_or_normalisation_add_nothing(keras_model: dict[str, Any], tmp_path: Path) -> None:
    path, order, parity = keras_model["model"], keras_model["order"], keras_model["parity"]
    models = tmp_path / "models"
    wrong = _cli("train", "import-keras", str(path), "--name", "bad", "--labels", ",".join(order[:13]),
                 "--input", "imagenet", "--parity-images", str(parity), "--models-dir", str(models))
    assert wrong.returncode == 1 and "missing" in wrong.stderr and order[13] in wrong.stderr
    garbled = _cli("train", "import-keras", str(path), "--name", "bad", "--labels", ",".join(order),
                   "--input", "mean=zero", "--parity-images", str(parity), "--models-dir", str(models))
    assert garbled.returncode == 1 and "--input" in garbled.stderr
    assert not (models / "manifest.json").exists()


def test_the_edge_runtime_does_not_import_tensorflow() -> None:
    code = ("import sys; from edge_agent.pipeline import build_pipeline; import edge_agent.diagnose_cli, "
            "edge_agent.batch; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr
