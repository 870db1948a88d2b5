"""``train region-sources``: per finding, which draws the region better out of
fold, the classifier's heat map or the detector?

Fold 0 of the shared patient-wise split is held out from both the detector
(its test split, ``training/detect.py``) and the classifier's fold-0 model, so
both are measured on the same unseen patients: for every boxed finding on a
fold-0 image, the heat map's peak (``localisation.json`` from
``train evaluate-localisation``) and the centre of the detector's most
confident box of that finding (any score above the decoder's floor; none is a
miss) either fall inside a radiologist box of that finding or not. Chance is
the share of the image the boxes cover.

Rule, fixed before the figures: a finding's regions come from the detector
when it hits more often than the heat map on at least 5 boxed findings;
otherwise from the heat map. The choice is made on the figures it reports,
so the chosen source's rate is optimistic by that selection; both rates are
shown.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.findings import FINDINGS
from shared.manifest import DEFAULT_MODELS_DIR
from training.boxes import Box, load_sample_boxes
from training.data import SAMPLE_SUBDIR

FILE = "region_sources.json"
MIN_BOXED = 5


@dataclass(frozen=True)
class SourceRow:
    """One finding's pointing figures for both sources on fold 0."""

    finding: str
    boxed: int
    heatmap_hits: int
    detector_hits: int
    chance: float
    source: str


def _detector_points(images: list[str], image_dir: Path, models_dir: Path) -> dict[str, dict[str, tuple]]:
    """Image -> finding -> centre of the detector's most confident box (no display thresholds)."""
    from edge_agent.detector import load_detector

    detector = load_detector(models_dir=models_dir)
    if detector is None:
        return {}
    detector.thresholds = np.full(len(FINDINGS), detector.conf, dtype=np.float32)
    points: dict[str, dict[str, tuple]] = {}
    for name in images:
        with Image.open(image_dir / name) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
        best: dict[str, tuple] = {}
        for region in detector.detect(pixels):  # most confident first
            best.setdefault(str(region.finding), ((region.x1 + region.x2) / 2, (region.y1 + region.y2) / 2))
        points[name] = best
    return points


def measure(run: Path, data_root: Path, models_dir: Path = DEFAULT_MODELS_DIR, fold: int = 0
            ) -> list[SourceRow]:
    """Both sources' pointing hits per finding on the held-out fold's boxed findings."""
    pointings = [p for p in json.loads((run / "localisation.json").read_text(encoding="utf-8"))
                 if p["fold"] == fold]
    boxes: dict[tuple[str, str], list[Box]] = defaultdict(list)
    for box in load_sample_boxes(data_root / SAMPLE_SUBDIR / "boxes.csv"):
        boxes[(box.image, str(box.finding))].append(box)
    images = sorted({p["image"] for p in pointings})
    detected = _detector_points(images, data_root / SAMPLE_SUBDIR / "images", models_dir)
    tally: dict[str, list[tuple[bool, bool, float]]] = defaultdict(list)
    for p in pointings:
        mine = boxes[(p["image"], p["finding"])]
        centre = detected.get(p["image"], {}).get(p["finding"])
        hit = centre is not None and any(b.contains(*centre) for b in mine)
        tally[p["finding"]].append((bool(p["hit"]), hit, float(p["chance"])))
    rows = []
    for finding in FINDINGS:
        results = tally.get(str(finding), [])
        if not results:
            continue
        heat, det = sum(r[0] for r in results), sum(r[1] for r in results)
        source = "detector" if len(results) >= MIN_BOXED and det > heat else "heatmap"
        rows.append(SourceRow(str(finding), len(results), heat, det,
                              round(float(np.mean([r[2] for r in results])), 4), source))
    return rows


def write(rows: list[SourceRow], run: Path, fold: int = 0, command: str = "") -> Path:
    """``region_sources.json`` (for ``train export``) and ``region-sources.md`` (for the card)."""
    sources = {str(f): "heatmap" for f in FINDINGS}
    sources.update({r.finding: r.source for r in rows})
    (run / FILE).write_text(json.dumps({"sources": sources, "rows": [asdict(r) for r in rows],
                                        "data": f"fold {fold} of the shared patient-wise split (held out "
                                                "from the detector and the fold model)",
                                        "command": command}, indent=2) + "\n",
                            encoding="utf-8")
    lines = ["## Where the regions come from (measured, held-out fold 0)", "",
             "A hit: the heat map's peak, or the centre of the detector's most confident box of the "
             "finding, inside a radiologist box of that finding; fold 0 is held out from both the detector "
             "and the fold model. Regions of a finding come from the detector where it hits more often on "
             "at least 5 boxed findings, else from the heat map (the chosen rate is optimistic by that "
             "selection). Not for clinical use.", "",
             "| finding | boxed findings | heat-map hits | detector hits | chance | regions from |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.finding} | {r.boxed} | {r.heatmap_hits} ({r.heatmap_hits / r.boxed:.0%}) | "
                     f"{r.detector_hits} ({r.detector_hits / r.boxed:.0%}) | {r.chance:.0%} | {r.source} |")
    total = sum(r.boxed for r in rows)
    if total:
        lines.append(f"| **all** | {total} | {sum(r.heatmap_hits for r in rows) / total:.0%} | "
                     f"{sum(r.detector_hits for r in rows) / total:.0%} | "
                     f"{sum(r.chance * r.boxed for r in rows) / total:.0%} | |")
    md = run / "region-sources.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md
