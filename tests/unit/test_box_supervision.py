"""The radiologist-box attention loss: a boxed image's loss depends on where its
class activation map is; an unboxed image's does not."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from shared.findings import FINDINGS, Finding  # noqa: E402
from training.box_supervision import box_attention_loss, box_masks  # noqa: E402
from training.boxes import Box  # noqa: E402

K = FINDINGS.index(Finding.EFFUSION)


def _cam_with_peak(y: int, x: int, grid: int = 8) -> torch.Tensor:
    cam = torch.zeros(1, len(FINDINGS), grid, grid)
    cam[0, K, y, x] = 6.0
    return cam


def test_masks_mark_the_cells_inside_each_box_and_never_lose_a_small_box() -> None:
    boxes = [Box("a.png", Finding.EFFUSION, 0.5, 0.5, 1.0, 1.0, "NIH"),
             Box("b.png", Finding.NODULE, 0.30, 0.30, 0.31, 0.31, "NIH"),  # smaller than a cell
             Box("elsewhere.png", Finding.MASS, 0.0, 0.0, 1.0, 1.0, "NIH")]
    masks = box_masks(["a.png", "b.png", "c.png"], boxes, grid=8)
    assert masks.shape == (3, 14, 8, 8)
    assert masks[0, K, 4:, 4:].all() and not masks[0, K, :4].any() and masks[0].sum() == 16
    assert masks[1, FINDINGS.index(Finding.NODULE)].sum() == 1  # the cell holding the box's centre
    assert not masks[2].any()


def test_a_boxed_image_loses_less_when_its_map_peaks_inside_the_box() -> None:
    masks = box_masks(["a.png"], [Box("a.png", Finding.EFFUSION, 0.5, 0.5, 1.0, 1.0, "NIH")], grid=8)
    inside = box_attention_loss(_cam_with_peak(6, 6), masks)
    outside = box_attention_loss(_cam_with_peak(1, 1), masks)
    assert inside < 0.2 < 2.0 < outside


def test_an_unboxed_image_adds_nothing_wherever_its_map_is() -> None:
    masks = torch.zeros(1, len(FINDINGS), 8, 8, dtype=torch.bool)
    for y, x in ((1, 1), (6, 6)):
        cam = _cam_with_peak(y, x).requires_grad_()
        loss = box_attention_loss(cam, masks)
        loss.backward()
        assert float(loss) == 0.0 and cam.grad is not None and not cam.grad.any()


def test_the_gradient_moves_the_map_into_the_box() -> None:
    masks = box_masks(["a.png"], [Box("a.png", Finding.EFFUSION, 0.5, 0.5, 1.0, 1.0, "NIH")], grid=8)
    cam = torch.zeros(1, len(FINDINGS), 8, 8, requires_grad=True)
    box_attention_loss(cam, masks).backward()
    assert cam.grad is not None
    assert (cam.grad[0, K, 4:, 4:] < 0).all() and (cam.grad[0, K, :4, :] > 0).all()  # descent raises inside
    assert not cam.grad[0, :K].any() and not cam.grad[0, K + 1:].any()  # other findings untouched
