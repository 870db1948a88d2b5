"""The box detector on the edge: letterbox, run, decode, suppress - in numpy.

The exported YOLO head gives, per anchor, a box (centre x, centre y, width,
height in input pixels) and a score per finding. Decoding keeps each anchor's
best finding above ``conf``, converts to corners, runs non-maximum
suppression per finding, and maps the boxes back to the original image.
Defaults equal ultralytics' own prediction defaults, so the parity test
compares like with like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent.backends import Backend, BackendConfig, OpenVinoConfig, create_backend
from shared.findings import FINDINGS
from shared.manifest import DEFAULT_MODELS_DIR, ModelEntry, ModelManifestError, load_manifest
from shared.messages import Region

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR = "chest-yolo"
PAD = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square input."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def letterbox(pixels: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Grey (H, W) uint8 -> (1, 3, size, size) float32 in [0, 1], aspect kept."""
    h, w = pixels.shape
    scale = min(size / h, size / w)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas = np.full((size, size), PAD, np.uint8)
    pad_x, pad_y = (size - new_w) / 2, (size - new_h) / 2
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    canvas[top:top + new_h, left:left + new_w] = resized
    batch = np.repeat((canvas.astype(np.float32) / 255.0)[None, None], 3, axis=1)
    return batch, Letterbox(scale, left, top, w, h)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with many (N, 4), corners."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def decode(output: np.ndarray, fit: Letterbox, *, conf: float = 0.25, iou_threshold: float = 0.7,
           max_boxes: int = 30) -> list[tuple[int, float, np.ndarray]]:
    """(1, 4 + classes, anchors) -> [(class, score, x1 y1 x2 y2 in original pixels)]."""
    head = output[0].T
    boxes_xywh, scores_all = head[:, :4], head[:, 4:]
    classes = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(head)), classes]
    keep = scores > conf
    boxes_xywh, classes, scores = boxes_xywh[keep], classes[keep], scores[keep]
    corners = np.stack([boxes_xywh[:, 0] - boxes_xywh[:, 2] / 2, boxes_xywh[:, 1] - boxes_xywh[:, 3] / 2,
                        boxes_xywh[:, 0] + boxes_xywh[:, 2] / 2, boxes_xywh[:, 1] + boxes_xywh[:, 3] / 2], 1)
    results = []
    for cls in np.unique(classes):
        mine = np.flatnonzero(classes == cls)
        for k in nms(corners[mine], scores[mine], iou_threshold):
            results.append((int(cls), float(scores[mine][k]), corners[mine][k]))
    results.sort(key=lambda r: -r[1])
    out = []
    for cls, score, box in results[:max_boxes]:
        x1 = np.clip((box[0] - fit.pad_x) / fit.scale, 0, fit.width)
        y1 = np.clip((box[1] - fit.pad_y) / fit.scale, 0, fit.height)
        x2 = np.clip((box[2] - fit.pad_x) / fit.scale, 0, fit.width)
        y2 = np.clip((box[3] - fit.pad_y) / fit.scale, 0, fit.height)
        out.append((cls, score, np.array([x1, y1, x2, y2], dtype=np.float32)))
    return out


class ModelDetector:
    """A manifest detector run by one backend."""

    def __init__(self, entry: ModelEntry, backend: Backend, conf: float = 0.25) -> None:
        if entry.task != "detector":
            raise ModelManifestError(f"{entry.key} is a {entry.task}, not a detector")
        self.entry, self.backend, self.conf = entry, backend, conf
        # Per-finding score thresholds from the manifest; 1.0 means "never shown".
        self.thresholds = np.asarray(entry.thresholds or [conf] * len(FINDINGS), dtype=np.float32)

    def detect(self, pixels: np.ndarray) -> list[Region]:
        """Regions (normalised) for an 8-bit grey image, most confident first."""
        batch, fit = letterbox(pixels, self.entry.input.size)
        output = next(iter(self.backend.infer(batch).values()))
        regions = []
        for cls, score, (x1, y1, x2, y2) in decode(output, fit, conf=self.conf):
            if x2 - x1 < 1 or y2 - y1 < 1 or self.thresholds[cls] >= 1.0 or score < self.thresholds[cls]:
                continue
            regions.append(Region(finding=FINDINGS[cls], x1=x1 / fit.width, y1=y1 / fit.height,
                                  x2=x2 / fit.width, y2=y2 / fit.height, score=min(score, 1.0),
                                  source="detector"))
        return regions


def load_detector(backend: BackendConfig | None = None, *, name: str = DEFAULT_DETECTOR,
                  models_dir: Path = DEFAULT_MODELS_DIR) -> ModelDetector | None:
    """The detector from the manifest, or None when the manifest has none.

    Raises:
        ModelManifestError: it is listed but its files fail their check.
    """
    manifest = load_manifest(models_dir)
    if not any(m.name == name for m in manifest.models):
        return None
    entry = manifest.find(name)
    return ModelDetector(entry, create_backend(entry, models_dir, backend or OpenVinoConfig()))
