"""The edge's numpy box decoding: letterbox, NMS and mapping back to the image."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.detector import Letterbox, decode, iou, letterbox, nms


def test_letterbox_keeps_aspect_and_pads_grey() -> None:
    pixels = np.full((200, 400), 255, np.uint8)
    batch, fit = letterbox(pixels, 64)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    assert fit.scale == pytest.approx(64 / 400)
    assert fit.pad_x == 0 and fit.pad_y == 16
    assert batch[0, 0, 0, 0] == pytest.approx(114 / 255)
    assert batch[0, 0, 32, 32] == pytest.approx(1.0)
    assert (batch[0, 0] == batch[0, 2]).all()


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    scores = np.array([0.6, 0.9, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert iou(boxes[0], boxes[1:])[1] == 0


def _head(rows: list[tuple[float, float, float, float, int, float]], classes: int = 14) -> np.ndarray:
    out = np.zeros((1, 4 + classes, len(rows)), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = score
    return out


def test_decode_maps_boxes_back_through_the_letterbox() -> None:
    fit = Letterbox(scale=0.5, pad_x=0, pad_y=16, width=128, height=64)
    head = _head([(32, 32, 16, 16, 4, 0.9), (33, 32, 16, 16, 4, 0.8), (10, 20, 4, 4, 13, 0.1)])
    found = decode(head, fit)
    assert len(found) == 1
    cls, score, box = found[0]
    assert cls == 4 and score == pytest.approx(0.9)
    np.testing.assert_allclose(box, [48, 16, 80, 48])


def test_decode_keeps_overlapping_boxes_of_different_findings() -> None:
    fit = Letterbox(scale=1.0, pad_x=0, pad_y=0, width=64, height=64)
    head = _head([(32, 32, 16, 16, 1, 0.9), (32, 32, 16, 16, 2, 0.8)])
    assert sorted(c for c, _, _ in decode(head, fit)) == [1, 2]
