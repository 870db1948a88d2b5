"""Radiologist boxes of the sample's ``boxes.csv`` (drawn for NIH's box list and
ChestX-Det), mapped onto the 14 findings.

Mapping (ChestX-Det's 13 categories and NIH's 8 names onto
:data:`shared.findings.FINDINGS`): names equal to a finding map to it;
``Pleural Thickening`` -> Pleural_Thickening; ``Diffuse Nodule`` -> Nodule;
``Infiltrate`` -> Infiltration. Dropped, because they are not among the 14:
``Fracture`` and ``Calcification``.

Coordinates are normalised to the image (0..1), so they apply at any resolution.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shared.findings import FINDINGS, Finding

logger = logging.getLogger(__name__)

ALIASES = {
    "Pleural Thickening": Finding.PLEURAL_THICKENING,
    "Diffuse Nodule": Finding.NODULE,
    "Infiltrate": Finding.INFILTRATION,
}
DROPPED = frozenset({"Fracture", "Calcification"})
SAMPLE_SIDE = 512
"""The sample's boxes are in its 512 px images' coordinates."""


@dataclass(frozen=True)
class Box:
    """One radiologist box, normalised to the image (0..1)."""

    image: str
    finding: Finding
    x1: float
    y1: float
    x2: float
    y2: float
    source: str

    def contains(self, x: float, y: float) -> bool:
        """Whether a normalised point lies inside the box."""
        return self.x1 <= x <= self.x2 and self.y1 <= y <= self.y2


def map_finding(name: str) -> Finding | None:
    """The finding a box category means, or None for the dropped ones."""
    name = name.strip()
    if name in DROPPED:
        return None
    if name in ALIASES:
        return ALIASES[name]
    for finding in FINDINGS:
        if name == str(finding):
            return finding
    raise ValueError(f"unknown box category {name!r}")


def load_sample_boxes(path: Path, side: int = SAMPLE_SIDE) -> list[Box]:
    """The sample's ``boxes.csv`` (pixel coordinates of ``side`` px images)."""
    boxes, dropped = [], Counter()
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            finding = map_finding(row["Finding"])
            if finding is None:
                dropped[row["Finding"]] += 1
                continue
            x1, y1, x2, y2 = (min(max(float(row[k]) / side, 0.0), 1.0) for k in ("x1", "y1", "x2", "y2"))
            if x2 > x1 and y2 > y1:
                boxes.append(Box(row["Image Index"], finding, x1, y1, x2, y2, row.get("source", "")))
    if dropped:
        logger.info("box categories outside the 14 findings dropped", extra=dict(dropped))
    return boxes

