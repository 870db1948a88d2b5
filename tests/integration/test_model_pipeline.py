"""Train a tiny classifier on real images, export it, and check every backend
against the torch reference; then the shipped model's parity and the edge
pipeline on the real DICOMs.

Tolerances (max |logit difference| from torch eager on the same weights):
ONNX Runtime 1e-3; OpenVINO FP16 IR at f32 arithmetic 0.15 (the weights are
rounded to FP16 before export, but the exporter folds batch norm into the
convolutions afterwards, and the IR rounds those folded weights again: about
0.03-0.08 on logits of magnitude up to ~10); the INT8 AUC change is what the
manifest reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra is not installed")

from edge_agent.backends import OnnxRuntimeConfig, OpenVinoConfig, TorchConfig, create_backend  # noqa: E402
from edge_agent.classifier import DEFAULT_CLASSIFIER, ModelClassifier, load_classifier  # noqa: E402
from edge_agent.operators import XrayInput  # noqa: E402
from edge_agent.pipeline import DiagnosisPipeline  # noqa: E402
from shared.errors import ConfigurationError  # noqa: E402
from shared.findings import FINDINGS  # noqa: E402
from shared.manifest import DEFAULT_MODELS_DIR, ModelManifestError, load_manifest  # noqa: E402
from training.data import load_pixels, load_sample  # noqa: E402

pytestmark = pytest.mark.realdata
TOLERANCE = {"onnxruntime": 1e-3, "openvino": 0.15}
GOLDENHOUR = [sys.executable, "-m", "shared.cli"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GOLDENHOUR, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, data_folder: Path) -> Path:
    """A tiny classifier trained and exported by the project's own commands."""
    root = tmp_path_factory.mktemp("tiny")
    run, models = root / "run", root / "models"
    trained = _cli("train", "classify", "--data", str(data_folder), "--out", str(run), "--limit", "64",
                   "--folds", "2", "--views", "2", "--epochs", "2", "--size", "64")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    summary = json.loads((run / "run.json").read_text())
    assert summary["images"] == 64 and len(summary["best_epochs"]) == 2
    assert (run / "oof.csv").read_text().count("\n") == 65
    exported = _cli("train", "export", "--run", str(run), "--models-dir", str(models), "--name", "tiny",
                    "--data", str(data_folder))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "parity on 32 real images" in exported.stdout
    return models


def _real_batch(data_folder: Path, size: int, n: int = 6) -> np.ndarray:
    data = load_sample(data_folder, with_teacher=False)
    picked = data.subset(np.arange(0, len(data), len(data) // n)[:n])
    return ((load_pixels(picked, size).astype(np.float32) - 127.0) / 128.0)[:, None]


def _parity(models: Path, name: str, data_folder: Path) -> dict[str, float]:
    entry = load_manifest(models).find(name)
    batch = _real_batch(data_folder, entry.input.size)
    reference = create_backend(entry, models, TorchConfig())
    differences = {}
    for kind, config in (("onnxruntime", OnnxRuntimeConfig()), ("openvino", OpenVinoConfig())):
        backend = create_backend(entry, models, config)
        for i in range(len(batch)):
            ref = reference.infer(batch[i:i + 1])
            out = backend.infer(batch[i:i + 1])
            assert out["logits"].shape == (1, len(FINDINGS))
            assert out["cam"].shape[:2] == (1, len(FINDINGS))
            differences[kind] = max(differences.get(kind, 0.0),
                                    float(np.abs(out["logits"] - ref["logits"]).max()))
            # the map the edge draws is the one the logits came from
            np.testing.assert_allclose(out["cam"].mean(axis=(2, 3)), ref["logits"] -
                                       _bias(models, name), atol=TOLERANCE[kind] * 2)
    return differences


def _bias(models: Path, name: str) -> np.ndarray:
    import torch

    entry = load_manifest(models).find(name)
    saved = torch.load(models / entry.file("torch", "fp16").path, weights_only=True)
    return saved["state_dict"]["head.fc.bias"].float().numpy()


def test_tiny_model_backends_agree_with_torch(tiny_models: Path, data_folder: Path) -> None:
    differences = _parity(tiny_models, "tiny", data_folder)
    for kind, difference in differences.items():
        assert difference <= TOLERANCE[kind], (kind, difference)


def test_tiny_model_manifest_entry_is_complete(tiny_models: Path) -> None:
    entry = load_manifest(tiny_models).find("tiny")
    assert entry.labels == [str(f) for f in FINDINGS]
    assert entry.input.size == 64 and entry.input.channels == 1
    assert len(entry.thresholds or []) == 14 and len(entry.temperature or []) == 14
    assert {(f.format, f.precision) for f in entry.files} >= {
        ("onnx", "fp32"), ("openvino-xml", "fp16"), ("openvino-xml", "int8"), ("torch", "fp16")}
    assert "goldenhour train classify" in entry.command and "goldenhour train export" in entry.command
    names = {m.name for m in entry.metrics}
    assert {"mean_auc_oof", "int8_mean_auc_change", "ece_after_calibration"} <= names
    assert all(m.data for m in entry.metrics)
    card = (tiny_models / "tiny" / "README.md").read_text()
    assert "NOT FOR CLINICAL USE" in card and "mean_auc_oof" in card


def test_a_tampered_model_file_is_refused_at_start(tiny_models: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(tiny_models, copy)
    entry = load_manifest(copy).find("tiny")
    onnx = copy / entry.file("onnx").path
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelManifestError, match="sha256"):
        load_classifier(OnnxRuntimeConfig(), name="tiny", models_dir=copy)
    with pytest.raises(ModelManifestError, match="no model"):
        load_classifier(OnnxRuntimeConfig(), name="absent", models_dir=copy)
    (copy / entry.file("openvino-xml", "int8").path).unlink()
    with pytest.raises(ConfigurationError, match="missing"):
        load_classifier(OpenVinoConfig(precision="int8"), name="tiny", models_dir=copy)


def test_diagnose_command_on_the_real_dicom(tiny_models: Path, data_folder: Path, tmp_path: Path) -> None:
    dicom = data_folder / "dicom" / "siim-cxr-monochrome2.dcm"
    result = _cli("diagnose", str(dicom), "--json", "--models-dir", str(tiny_models), "--model", "tiny",
                  "--backend", "onnxruntime", "--overlays", str(tmp_path), "--spo2", "88", "--rr", "28")
    assert result.returncode == 0, result.stderr
    diagnosis = json.loads(result.stdout)
    assert [f["finding"] for f in diagnosis["findings"]] == [str(f) for f in FINDINGS]
    assert len(diagnosis["top3"]) == 3 and diagnosis["model"]["name"] == "tiny"
    assert len(diagnosis["model"]["sha256"]) == 64
    assert len(diagnosis["overlays"]) == 3
    assert len(list(tmp_path.glob("*.jpg"))) == 3
    assert diagnosis["vitals"]["spo2_pct"] == 88
    bad = tmp_path / "not-an-xray.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    refused = _cli("diagnose", str(bad), "--models-dir", str(tiny_models), "--model", "tiny")
    assert refused.returncode == 2 and "cannot diagnose" in refused.stderr


def test_ddp_training_with_gloo_on_two_cpu_processes(data_folder: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port),
         "-m", "shared.cli", "train", "classify", "--data", str(data_folder), "--out", str(run),
         "--limit", "48", "--folds", "2", "--views", "1", "--epochs", "1", "--size", "64", "--no-final"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((run / "run.json").read_text())
    assert summary["images"] == 48 and summary["folds"] == 2


SHIPPED = pytest.mark.skipif(not (DEFAULT_MODELS_DIR / "manifest.json").is_file(), reason="no manifest")


@SHIPPED
def test_shipped_classifier_backends_agree_with_torch(data_folder: Path) -> None:
    differences = _parity(DEFAULT_MODELS_DIR, DEFAULT_CLASSIFIER, data_folder)
    for kind, difference in differences.items():
        assert difference <= TOLERANCE[kind], (kind, difference)


@SHIPPED
def test_shipped_pipeline_on_a_real_dicom(data_folder: Path) -> None:
    pipeline = DiagnosisPipeline(load_classifier())
    assert isinstance(pipeline.classifier, ModelClassifier)
    result = pipeline.run(XrayInput.read(data_folder / "dicom" / "siim-cxr-monochrome2.dcm"))
    assert not result.model.placeholder and result.model.sha256
    assert all(0 <= f.probability <= 1 for f in result.findings)
    assert result.overlays and len(result.overlays) == 3
    assert {"decode", "ood", "preprocess", "classify", "heatmap", "triage"} <= set(result.timings_ms)
    thresholds = load_manifest().find(DEFAULT_CLASSIFIER).thresholds
    assert [f.threshold for f in result.findings] == pytest.approx(thresholds)


@SHIPPED
def test_the_monochrome1_file_shows_as_a_negative_and_is_refused(data_folder: Path) -> None:
    """The MONOCHROME1 sample holds the MONOCHROME2 file's stored values under the
    other tag, so displayed as the standard says it is the image's negative: the
    guard refuses it rather than diagnose a negative."""
    from shared.errors import NotChestRadiographError

    pipeline = DiagnosisPipeline(load_classifier())
    with pytest.raises(NotChestRadiographError, match="negative"):
        pipeline.run(XrayInput.read(data_folder / "dicom" / "siim-cxr-monochrome1.dcm"))
