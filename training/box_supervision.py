"""Radiologist boxes as extra supervision for the class-activation head.

On an image with a radiologist box of finding k, the class activation map of
k is read as a distribution over the feature grid (a softmax over its cells);
the loss is the negative log of the mass that falls inside the box. So the
map is pulled towards the box, and its peak (what the pointing game and the
heat-map regions use) with it. Images without a box of k add nothing: they
train on their image labels alone, as in Li et al., "Thoracic Disease
Identification and Localization with Limited Supervision" (CVPR 2018), who
used NIH's boxed images the same way beside image-level labels.

Only the training part of a fold contributes boxes (the loss is computed on
training batches), so a held-out image's box never shapes the model that
scores it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from shared.findings import FINDINGS
from training.boxes import Box, load_sample_boxes


def box_masks(names: list[str], boxes: Iterable[Box], grid: int) -> torch.Tensor:
    """(N, 14, grid, grid) bool: the feature cells inside a box of each finding.

    A cell is inside when its centre is; a box too small to hold a cell centre
    still marks the cell that holds its own centre, so no box is lost.
    """
    row_of = {name: i for i, name in enumerate(names)}
    index = {finding: k for k, finding in enumerate(FINDINGS)}
    centres = (np.arange(grid) + 0.5) / grid
    masks = np.zeros((len(names), len(FINDINGS), grid, grid), dtype=bool)
    for box in boxes:
        row = row_of.get(box.image)
        if row is None:
            continue
        xs = (centres >= box.x1) & (centres <= box.x2)
        ys = (centres >= box.y1) & (centres <= box.y2)
        cell = np.outer(ys, xs)
        if not cell.any():
            cy = min(int((box.y1 + box.y2) / 2 * grid), grid - 1)
            cx = min(int((box.x1 + box.x2) / 2 * grid), grid - 1)
            cell[cy, cx] = True
        masks[row, index[box.finding]] |= cell
    return torch.from_numpy(masks)


def sample_box_masks(image_dir: Path, names: list[str], grid: int) -> torch.Tensor:
    """Masks from the sample's ``boxes.csv`` (beside its image folder)."""
    return box_masks(names, load_sample_boxes(image_dir.parent / "boxes.csv"), grid)


def box_attention_loss(cam: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over boxed (image, finding) pairs of -log(softmax(cam) mass inside the box).

    ``cam`` (B, 14, h, w) and ``masks`` (B, 14, h, w) bool; zero (with a
    gradient of zero) when the batch holds no box.
    """
    boxed = masks.flatten(2).any(-1)
    if not boxed.any():
        return cam.sum() * 0.0
    log_p = torch.log_softmax(cam.float().flatten(2), dim=-1)[boxed]
    inside = masks.flatten(2)[boxed]
    mass = torch.logsumexp(log_p.masked_fill(~inside, float("-inf")), dim=-1)
    return -mass.mean()
