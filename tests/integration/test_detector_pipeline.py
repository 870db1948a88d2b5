"""A tiny detector trained by ``goldenhour train detect`` on real boxes, and
the edge's numpy decoder checked against ultralytics' own predictions on the
same exported model and the same images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics", reason="the train extra is not installed")

from edge_agent.backends import OnnxRuntimeConfig, OpenVinoConfig  # noqa: E402
from edge_agent.detector import DEFAULT_DETECTOR, decode, letterbox, load_detector  # noqa: E402
from shared.manifest import DEFAULT_MODELS_DIR, load_manifest  # noqa: E402

pytestmark = pytest.mark.realdata
SIZE = 128


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory, data_folder: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("det")
    models = root / "models"
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "train", "detect", "--data", str(data_folder), "--out",
         str(root / "run"), "--epochs", "1", "--size", str(SIZE), "--batch", "16", "--register",
         "--models-dir", str(models), "--name", "tiny-yolo"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, models


def test_dataset_split_is_patient_wise(tiny_detector: tuple[Path, Path], data_folder: Path) -> None:
    import csv

    root, _ = tiny_detector
    patients = {r["Image Index"]: r["Patient ID"] for r in
                csv.DictReader((data_folder / "nih-cxr14-sample" / "labels.csv").open())}
    seen: dict[str, set[str]] = {}
    for part in ("train", "val", "test"):
        names = [p.name for p in (root / "run" / "dataset" / "images" / part).iterdir()]
        assert names, part
        seen[part] = {patients[n] for n in names}
        for name in names:
            label = root / "run" / "dataset" / "labels" / part / f"{Path(name).stem}.txt"
            rows = [line.split() for line in label.read_text().splitlines()]
            assert rows and all(0 <= int(r[0]) < 14 and all(0 <= float(v) <= 1 for v in r[1:]) for r in rows)
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["val"]
    assert not seen["val"] & seen["test"]
    report = json.loads((root / "run" / "detector.json").read_text())
    assert 0 <= report["test"]["map50"] <= 1


def test_edge_decoder_matches_ultralytics(tiny_detector: tuple[Path, Path], tmp_path: Path,
                                          data_folder: Path) -> None:
    from PIL import Image
    from ultralytics import YOLO

    _, models = tiny_detector
    entry = load_manifest(models).find("tiny-yolo")
    onnx = models / entry.file("onnx").path
    reference = YOLO(str(onnx), task="detect")
    detector = load_detector(OnnxRuntimeConfig(), name="tiny-yolo", models_dir=models)
    assert detector is not None
    compared = 0
    for source in sorted((data_folder / "nih-cxr14-sample" / "images").glob("*.png"))[:6]:
        # At the model's own size neither side resizes, so both see identical pixels.
        path = tmp_path / source.name
        Image.open(source).convert("L").resize((SIZE, SIZE)).save(path)
        pixels = np.asarray(Image.open(path))
        batch, fit = letterbox(pixels, SIZE)
        raw = next(iter(detector.backend.infer(batch).values()))
        ours = decode(raw, fit, conf=1e-6, iou_threshold=0.7, max_boxes=20)
        theirs = reference.predict(str(path), imgsz=SIZE, conf=1e-6, iou=0.7, max_det=20, verbose=False,
                                   device="cpu")[0].boxes
        assert len(ours) == len(theirs)
        for (cls, score, box), k in zip(ours, range(len(theirs)), strict=True):
            assert cls == int(theirs.cls[k])
            assert score == pytest.approx(float(theirs.conf[k]), abs=1e-3)
            np.testing.assert_allclose(box, theirs.xyxy[k].numpy(), atol=0.5)
        compared += len(ours)
    assert compared > 0


def test_openvino_and_onnxruntime_detectors_agree(tiny_detector: tuple[Path, Path],
                                                   data_folder: Path) -> None:
    from PIL import Image

    _, models = tiny_detector
    pixels = np.asarray(Image.open(sorted((data_folder / "nih-cxr14-sample" / "images").glob("*.png"))[0]))
    batch, _ = letterbox(pixels, SIZE)
    outputs = []
    for config in (OnnxRuntimeConfig(), OpenVinoConfig()):
        detector = load_detector(config, name="tiny-yolo", models_dir=models)
        assert detector is not None
        outputs.append(next(iter(detector.backend.infer(batch).values())))
    assert np.abs(outputs[0] - outputs[1]).max() < 0.05 * max(1.0, float(np.abs(outputs[0]).max()))


def _shipped_detector() -> bool:
    if not (DEFAULT_MODELS_DIR / "manifest.json").is_file():
        return False
    return any(m.name == DEFAULT_DETECTOR for m in load_manifest(DEFAULT_MODELS_DIR).models)


@pytest.mark.skipif(not _shipped_detector(), reason="no shipped detector in models/")
def test_shipped_detector_finds_regions_on_a_real_image(data_folder: Path) -> None:
    from PIL import Image

    detector = load_detector()
    assert detector is not None
    fullres = sorted((data_folder / "nih-cxr14-sample" / "fullres").glob("*.png"))
    pixels = np.asarray(Image.open(fullres[0]).convert("L"))
    batch, _ = letterbox(pixels, detector.entry.input.size)
    raw = next(iter(detector.backend.infer(batch).values()))
    assert raw.shape[:2] == (1, 4 + 14)
    enabled = {str(f) for f, t in zip(load_manifest().find(DEFAULT_DETECTOR).labels,
                                      detector.thresholds, strict=True) if t < 1.0}
    assert enabled, "the shipped detector shows boxes for no finding at all"
    regions = detector.detect(pixels)
    # only findings the detector was validated to localise, each a proper box
    assert all(r.source == "detector" and r.finding in enabled and 0 <= r.x1 < r.x2 <= 1 for r in regions)
