"""The box detector: radiologist boxes -> ultralytics dataset -> YOLO -> ONNX
and OpenVINO IR without NMS (the edge decodes and suppresses in numpy).

No pretrained detection weights can be downloaded here, so the detector
starts from scratch (``yolov8n.yaml`` / ``yolov8s.yaml``). Splits are by
patient, from the same stratified folds as the classifier (fold 0 test,
fold 1 validation, the rest training), so no patient is on two sides.
Only images with at least one box are used: an unboxed image in this sample
is not a normal one (most have findings that nobody boxed), so it cannot
serve as background.

Augmentations for radiographs: small rotation, scale and shift, brightness;
no flips, no hue or saturation (grey), no mosaic of four patients at the end
(``close_mosaic``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.findings import FINDINGS
from training.boxes import Box, load_sample_boxes
from training.data import SAMPLE_SUBDIR, load_sample
from training.folds import patient_folds

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
AUGMENT = dict(degrees=5.0, translate=0.05, scale=0.2, shear=0.0, perspective=0.0, flipud=0.0, fliplr=0.0,
               hsv_h=0.0, hsv_s=0.0, hsv_v=0.3, mosaic=1.0, mixup=0.0, close_mosaic=10)


@dataclass(frozen=True)
class DetectionData:
    """Where the dataset was written and what is in each split."""

    yaml: Path
    counts: dict[str, dict[str, int]]


def split_of_images(data_root: Path, seed: int = 0, folds: int = 5) -> dict[str, str]:
    """Image name -> split, patient-wise from the classifier's stratified folds."""
    dataset = load_sample(data_root, with_teacher=False)
    fold = patient_folds(dataset.patients, dataset.labels, folds, seed)
    names = {0: "test", 1: "val"}
    return {name: names.get(int(f), "train") for name, f in zip(dataset.names, fold, strict=True)}


def build_dataset(data_root: Path, out: Path, seed: int = 0) -> DetectionData:
    """Write the ultralytics layout (images linked, not copied) under ``out``."""
    boxes = load_sample_boxes(data_root / SAMPLE_SUBDIR / "boxes.csv")
    split = split_of_images(data_root, seed)
    by_image: dict[str, list[Box]] = defaultdict(list)
    for box in boxes:
        by_image[box.image].append(box)
    counts: dict[str, dict[str, int]] = {s: defaultdict(int) for s in SPLITS}  # type: ignore[misc]
    source = data_root / SAMPLE_SUBDIR / "images"
    for part in SPLITS:
        (out / "images" / part).mkdir(parents=True, exist_ok=True)
        (out / "labels" / part).mkdir(parents=True, exist_ok=True)
    for name, image_boxes in sorted(by_image.items()):
        part = split[name]
        link = out / "images" / part / name
        if not link.exists():
            link.symlink_to((source / name).resolve())
        lines = []
        for b in image_boxes:
            cx, cy, w, h = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2, b.x2 - b.x1, b.y2 - b.y1
            lines.append(f"{FINDINGS.index(b.finding)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            counts[part][str(b.finding)] += 1
        (out / "labels" / part / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
        counts[part]["images"] += 1
    yaml = out / "data.yaml"
    names = "\n".join(f"  {i}: {f}" for i, f in enumerate(FINDINGS))
    yaml.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\ntest: images/test\n"
                    f"names:\n{names}\n")
    return DetectionData(yaml, {k: dict(v) for k, v in counts.items()})


def offline_ultralytics(workdir: Path) -> None:
    """Keep ultralytics from reaching the internet (no update checks, no font or
    weight downloads, no telemetry) and its settings inside ``workdir``."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(workdir / "ultralytics-config"))
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import settings

    settings.update({"sync": False, "runs_dir": str(workdir), "weights_dir": str(workdir),
                     "datasets_dir": str(workdir)})


def train_detector(data: DetectionData, out: Path, *, model: str, size: int, epochs: int, batch: int,
                   patience: int, seed: int, workers: int = 2) -> Path:
    """Train from scratch; returns the best weights (by validation mAP50-95)."""
    offline_ultralytics(out)
    from ultralytics import YOLO

    yolo = YOLO(f"{model}.yaml")
    yolo.train(data=str(data.yaml), imgsz=size, epochs=epochs, batch=batch, patience=patience, seed=seed,
               deterministic=True, device="cpu" if not _cuda() else 0, workers=workers, plots=False,
               project=str(out.resolve()), name="train", exist_ok=True, pretrained=False, amp=_cuda(),
               verbose=True,
               **AUGMENT)
    return out / "train" / "weights" / "best.pt"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def evaluate_detector(weights: Path, data: DetectionData, size: int, split: str = "test"
                      ) -> dict[str, object]:
    """mAP50 and mAP50-95 per finding on a split (ultralytics' own evaluator)."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=str(data.yaml), imgsz=size, split=split, plots=False,
                                     device="cpu", verbose=False, batch=8)
    per_class = {}
    for i, index in enumerate(metrics.box.ap_class_index):
        per_class[str(FINDINGS[int(index)])] = {"map50": float(metrics.box.ap50[i]),
                                                "map50_95": float(metrics.box.ap[i])}
    return {"map50": float(metrics.box.map50), "map50_95": float(metrics.box.map), "per_finding": per_class}


def export_detector(weights: Path, size: int, target: Path) -> tuple[Path, Path]:
    """ONNX (raw head output, no NMS) and an FP16-weight OpenVINO IR of it."""
    import openvino as ov
    from ultralytics import YOLO

    target.mkdir(parents=True, exist_ok=True)
    onnx = Path(YOLO(str(weights)).export(format="onnx", imgsz=size, opset=17, simplify=False, nms=False,
                                          dynamic=False))
    final = target / "detector.onnx"
    onnx.replace(final)
    xml = target / "detector.xml"
    from openvino.tools.ovc import convert_model  # see training/export.py

    ov.save_model(convert_model(str(final)), str(xml), compress_to_fp16=True)
    return final, xml


def map50_over(per_finding: dict[str, dict[str, float]], counts: dict[str, int], at_least: int = 10) -> float:
    """Mean mAP50 over findings with at least ``at_least`` boxes in the split."""
    values = [v["map50"] for k, v in per_finding.items() if counts.get(k, 0) >= at_least]
    return float(np.mean(values)) if values else float("nan")
