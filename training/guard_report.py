"""Measure the chest-radiograph guard: ``goldenhour train guard-report`` and
``goldenhour train orientation-report`` (the tables of docs/edge-ingest.md and
docs/image-guard.md).

``report`` counts false refusals on real chest X-rays (in-sample, held out by
a 2-fold refit by patient, at full resolution, altered, DICOM) and refusals of
other pictures. ``measure`` reads the orientation check on the half of the NIH
patients it was not fitted on, turned and mirrored in memory.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent import orientation
from edge_agent.guard_model import OrientationParameters
from edge_agent.ood import OodResult, check_chest_radiograph
from training.guard import Film, fit_statistics, fitting_half, nih_films
from training.guard_samples import altered, library_samples, synthetic_non_cxrs, through_loader

logger = logging.getLogger(__name__)


@dataclass
class Tally:
    """One line of the guard report: images, refusals, refusals by the loader, wrong answers."""

    total: int = 0
    flagged: int = 0
    loader: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, name: str, result: OodResult | str, *, expect_ok: bool) -> None:
        self.total += 1
        if isinstance(result, str):
            self.loader += 1
            self.flagged += 1
            return
        if not result.ok:
            self.flagged += 1
        if result.ok != expect_ok and len(self.examples) < 12:
            why = result.reasons[0] if result.reasons else f"score {result.score}"
            self.examples.append(f"{name} ({why})")


def report(data: Path) -> dict[str, Tally]:
    """False refusals on the real chest X-rays, refusals of everything else (shipped parameters)."""
    from edge_agent.imaging import load_image

    tallies: dict[str, Tally] = {}
    nih = nih_films(data)
    tally = tallies.setdefault("real: NIH ChestX-ray14 sample (shipped parameters, in-sample)", Tally())
    for film in nih:
        tally.add(film.name, check_chest_radiograph(film.pixels), expect_ok=True)
    # Out of sample: fit on one half of the patients, test on the other, and the other way round.
    held_out = tallies.setdefault("real: NIH, held out (2-fold by patient, refitted)", Tally())
    for part in (0, 1):
        fold = fit_statistics(film.pixels for film in nih if int(film.patient) % 2 == part)
        for film in nih:
            if int(film.patient) % 2 != part:
                held_out.add(film.name, check_chest_radiograph(film.pixels, parameters=fold), expect_ok=True)
    fullres = tallies.setdefault("real: NIH at full resolution (1024 px)", Tally())
    for path in sorted((data / "nih-cxr14-sample" / "fullres").glob("*.png")):
        fullres.add(path.name, check_chest_radiograph(load_image(path).pixels), expect_ok=True)
    changed = tallies.setdefault("real: NIH, every 7th, altered (rotated, cropped, gamma, JPEG)", Tally())
    for name, version in altered([(film.name, film.pixels) for film in nih[::7]]):
        changed.add(name, check_chest_radiograph(version), expect_ok=True)
    dicoms = tallies.setdefault("real: SIIM DICOM, MONOCHROME2", Tally())
    dicoms.add("siim-cxr-monochrome2.dcm", check_chest_radiograph(
        load_image(data / "dicom" / "siim-cxr-monochrome2.dcm").pixels), expect_ok=True)
    negative = tallies.setdefault("real: SIIM DICOM, MONOCHROME1 label on MONOCHROME2 pixels", Tally())
    negative.add("siim-cxr-monochrome1.dcm", check_chest_radiograph(
        load_image(data / "dicom" / "siim-cxr-monochrome1.dcm").pixels), expect_ok=False)

    samples, notes = library_samples()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        for name, array in samples:
            grey = array if array.ndim == 2 else np.asarray(Image.fromarray(array).convert("L"))
            for group, version in (("grey", grey), ("grey, inverted", 255 - grey)):
                loaded = through_loader(version, folder, f"{name} {group}")
                tallies.setdefault(f"other: library samples, {group}", Tally()).add(
                    name, loaded if isinstance(loaded, str) else check_chest_radiograph(loaded[0]),
                    expect_ok=False)
            if array.ndim == 3:
                loaded = through_loader(array, folder, f"{name} colour")
                tallies.setdefault("other: library samples, colour", Tally()).add(
                    name, loaded if isinstance(loaded, str) else check_chest_radiograph(
                        loaded[0], source_was_colour=loaded[1]), expect_ok=False)
        for name, array in synthetic_non_cxrs():
            tallies.setdefault("other: synthetic", Tally()).add(name, check_chest_radiograph(array),
                                                                expect_ok=False)
    for note in notes:
        logger.info(note)
    return tallies


# --- the orientation check -------------------------------------------------------------------------------

CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "upright (as stored)": lambda a: a,
    "rotated 90 degrees clockwise": lambda a: np.rot90(a, 3),
    "rotated 180 degrees": lambda a: np.rot90(a, 2),
    "rotated 270 degrees clockwise": lambda a: np.rot90(a, 1),
    "mirrored left-right": lambda a: a[:, ::-1],
    "mirrored top-bottom": lambda a: a[::-1, :],
}


def nih_halves(data: Path) -> tuple[list[np.ndarray], list[Film]]:
    """(films the orientation check is fitted on, films of the other patients)."""
    films = nih_films(data)
    return ([film.pixels for film in films if fitting_half(film.patient)],
            [film for film in films if not fitting_half(film.patient)])


@dataclass
class Row:
    """One line of the orientation report."""

    images: str
    count: int = 0
    refused_orientation: int = 0
    refused_guard: int = 0

    def cells(self) -> list[str]:
        def rate(n: int) -> str:
            return f"{n} ({n / self.count:.1%})" if self.count else "-"

        return [self.images, str(self.count), rate(self.refused_orientation), rate(self.refused_guard)]


def measure(held_out: list[Film], parameters: OrientationParameters | None = None) -> list[Row]:
    """Refusals by the orientation check alone and by the whole guard, per change and on
    non-chest images."""
    rows: list[Row] = []
    for label, change in CHANGES.items():
        row = Row(f"NIH held-out half, {label}")
        for film in held_out:
            turned = np.ascontiguousarray(change(film.pixels))
            row.count += 1
            row.refused_orientation += not orientation.check_orientation(turned, parameters).ok
            row.refused_guard += not check_chest_radiograph(turned, orientation_parameters=parameters).ok
        rows.append(row)
    samples, _ = library_samples()
    others = [(name, array if array.ndim == 2 else np.asarray(Image.fromarray(array).convert("L")))
              for name, array in samples] + synthetic_non_cxrs()
    row = Row("not chest X-rays: scikit-image/-learn samples (grey) and synthetic images")
    for _, array in others:
        row.count += 1
        row.refused_orientation += not orientation.check_orientation(array, parameters).ok
        row.refused_guard += not check_chest_radiograph(array, orientation_parameters=parameters).ok
    rows.append(row)
    return rows


def timing(films: list[Film], parameters: OrientationParameters | None = None) -> float:
    """Median milliseconds of one orientation check."""
    spent = []
    for film in films[:100]:
        start = time.perf_counter()
        orientation.check_orientation(film.pixels, parameters)
        spent.append((time.perf_counter() - start) * 1000)
    return float(np.median(spent))
