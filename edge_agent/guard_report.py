"""Measure (and refit) the orientation check of the image guard on the NIH sample.

``goldenhour edge guard-report`` prints the table in docs/image-guard.md:
the orientation check is fitted on the patients of one half of the NIH sample
(``sha256(patient id)`` even) and every figure is measured on the other half,
whose films it never saw. ``--write`` puts the fitted parameters into
``edge_agent/orientation.py``.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent import orientation
from edge_agent.ood import _library_samples, check_chest_radiograph, synthetic_non_cxrs

CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "upright (as stored)": lambda a: a,
    "rotated 90 degrees clockwise": lambda a: np.rot90(a, 3),
    "rotated 180 degrees": lambda a: np.rot90(a, 2),
    "rotated 270 degrees clockwise": lambda a: np.rot90(a, 1),
    "mirrored left-right": lambda a: a[:, ::-1],
    "mirrored top-bottom": lambda a: a[::-1, :],
}


def fitting_half(patient_id: str) -> bool:
    """Whether a patient's films are in the half the check is fitted on."""
    return int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % 2 == 0


def nih_halves(data: Path) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]]]:
    """(films to fit on, (name, film) to measure on), split by patient."""
    from edge_agent.imaging import load_image

    folder = data / "nih-cxr14-sample"
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        patients = {row["Image Index"]: row["Patient ID"] for row in csv.DictReader(handle)}
    fitting: list[np.ndarray] = []
    held_out: list[tuple[str, np.ndarray]] = []
    for path in sorted((folder / "images").glob("*.png")):
        pixels = load_image(path).pixels
        if fitting_half(patients.get(path.name, path.stem)):
            fitting.append(pixels)
        else:
            held_out.append((path.name, pixels))
    return fitting, held_out


@dataclass
class Row:
    """One line of the report."""

    images: str
    count: int = 0
    refused_orientation: int = 0
    refused_guard: int = 0

    def cells(self) -> list[str]:
        def rate(n: int) -> str:
            return f"{n} ({n / self.count:.1%})" if self.count else "-"

        return [self.images, str(self.count), rate(self.refused_orientation), rate(self.refused_guard)]


def measure(held_out: list[tuple[str, np.ndarray]],
            parameters: orientation.OrientationParameters | None = None) -> list[Row]:
    """Refusals by the orientation check alone and by the whole guard, per change and on non-chest images."""
    rows: list[Row] = []
    for label, change in CHANGES.items():
        row = Row(f"NIH held-out half, {label}")
        for _, pixels in held_out:
            film = np.ascontiguousarray(change(pixels))
            row.count += 1
            row.refused_orientation += not orientation.check_orientation(film, parameters).ok
            row.refused_guard += not check_chest_radiograph(film, orientation_parameters=parameters).ok
        rows.append(row)
    samples, _ = _library_samples()
    others = [(name, array if array.ndim == 2 else np.asarray(Image.fromarray(array).convert("L")))
              for name, array in samples] + synthetic_non_cxrs()
    row = Row("not chest X-rays: scikit-image/-learn samples (grey) and synthetic images")
    for _, array in others:
        row.count += 1
        row.refused_orientation += not orientation.check_orientation(array, parameters).ok
        row.refused_guard += not check_chest_radiograph(array, orientation_parameters=parameters).ok
    rows.append(row)
    return rows


def timing(films: list[tuple[str, np.ndarray]],
           parameters: orientation.OrientationParameters | None = None) -> float:
    """Median milliseconds of one orientation check."""
    spent = []
    for _, pixels in films[:100]:
        start = time.perf_counter()
        orientation.check_orientation(pixels, parameters)
        spent.append((time.perf_counter() - start) * 1000)
    return float(np.median(spent))


def write_parameters(parameters: orientation.OrientationParameters) -> None:
    """Replace the fitted block of ``edge_agent/orientation.py``."""
    path = Path(orientation.__file__)
    text = path.read_text(encoding="utf-8")
    start = text.index("# BEGIN FITTED PARAMETERS\n") + len("# BEGIN FITTED PARAMETERS\n")
    end = text.index("# END FITTED PARAMETERS")
    note = (f"Fitted by `goldenhour edge guard-report --fit --write` on {parameters.fitted_on} NIH films "
            f"(patients with sha256(id) even)")
    path.write_text(text[:start] + orientation.parameters_source(parameters, note) + text[end:],
                    encoding="utf-8")
