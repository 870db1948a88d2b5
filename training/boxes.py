"""Radiologist boxes: NIH's box list and ChestX-Det, mapped onto the 14 findings.

Mapping (ChestX-Det's 13 categories and NIH's 8 names onto
:data:`shared.findings.FINDINGS`): names equal to a finding map to it;
``Pleural Thickening`` -> Pleural_Thickening; ``Diffuse Nodule`` -> Nodule;
``Infiltrate`` -> Infiltration. Dropped, because they are not among the 14:
``Fracture`` and ``Calcification``.

Coordinates are kept in pixels of the image they were drawn on together with
that image's size, so they can be normalised to any resolution.
"""

from __future__ import annotations

import csv
import json
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


def load_chestx_det(path: Path, side: int = 1024) -> list[Box]:
    """ChestX-Det JSON (entries with ``nih_file_name``, ``syms``, ``boxes`` in
    pixels of the 1024 px NIH image)."""
    boxes = []
    for entry in json.loads(path.read_text(encoding="utf-8")):
        name = entry.get("nih_file_name") or entry["file_name"]
        for sym, (x1, y1, x2, y2) in zip(entry.get("syms", []), entry.get("boxes", []), strict=True):
            finding = map_finding(sym)
            if finding is not None and x2 > x1 and y2 > y1:
                boxes.append(Box(name, finding, x1 / side, y1 / side, x2 / side, y2 / side, "ChestX-Det"))
    return boxes


def load_nih_box_list(path: Path, side: int = 1024) -> list[Box]:
    """NIH's ``BBox_List_2017.csv`` (x, y, w, h in pixels of the 1024 px image)."""
    import gzip
    import io

    opener = (lambda: io.TextIOWrapper(gzip.open(path), encoding="utf-8")) if path.suffix == ".gz" \
        else (lambda: path.open(encoding="utf-8"))
    boxes = []
    with opener() as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            finding = map_finding(row[1])
            if finding is None:
                continue
            x, y, w, h = (float(v) for v in row[2:6])
            boxes.append(Box(row[0], finding, x / side, y / side, min((x + w) / side, 1.0),
                             min((y + h) / side, 1.0), "NIH BBox_List_2017"))
    return boxes
