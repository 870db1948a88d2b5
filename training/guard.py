"""Fit the chest-radiograph guard and write it as a model: ``goldenhour train guard``.

Two fits on the NIH sample, both summary statistics only (no image, no
per-image answer is stored):

* the grey-level statistics of :mod:`edge_agent.ood` on all of its films:
  per statistic the 0.1 to 99.9 percentile range widened by half its distance
  to the median, the mean and inverse covariance, a Mahalanobis distance limit
  of 1.1 times the films' own 99.5th percentile, and the average 16 x 16 layout
  and edge layout (the templates);
* the orientation check of :mod:`edge_agent.orientation` on the films of the
  patients whose ``sha256(Patient ID)`` is even, so that the other half stays
  unseen for ``goldenhour train orientation-report``.

:func:`write_guard` writes ``<models>/chest-guard/<version>/statistics.json``
and ``orientation.json`` and their manifest entry (task ``guard``), which the
edge reads through :mod:`edge_agent.guard_model`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent import orientation
from edge_agent.guard_model import (
    GUARD_MODEL,
    ORIENTATION_FILE,
    STATISTICS_FILE,
    OodParameters,
    OrientationParameters,
)
from edge_agent.ood import FEATURES, chest_layouts, features
from shared.errors import ConfigurationError
from shared.manifest import InputContract, Metric, ModelEntry, describe_file, load_manifest, save_manifest

RANGE_QUANTILE = 0.1
"""Percent of real chest X-rays below (and above) each statistic's fitted core range..."""
RANGE_MARGIN = 0.5
"""...which is then widened by this fraction of its distance to the median."""
DISTANCE_QUANTILE = 99.5
DISTANCE_MARGIN = 1.1
ORIENTATION_FALSE_REFUSALS = 0.0025
"""Each orientation margin refuses at most this fraction of the upright films it was fitted on."""


# --- the data --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Film:
    """One NIH film as the edge reads it."""

    name: str
    patient: str
    pixels: np.ndarray


def nih_films(data: Path) -> list[Film]:
    """Every PNG of the NIH sample (``nih-cxr14-sample/images``), read by the edge's
    ``load_image``, with its patient from ``labels.csv``.

    Raises:
        ConfigurationError: no NIH sample in ``data``.
    """
    from edge_agent.imaging import load_image

    folder = data / "nih-cxr14-sample"
    if not (folder / "labels.csv").is_file():
        raise ConfigurationError(f"no NIH sample (labels.csv) in {folder}")
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        patients = {row["Image Index"]: row["Patient ID"] for row in csv.DictReader(handle)}
    return [Film(path.name, patients.get(path.name, path.stem), load_image(path).pixels)
            for path in sorted((folder / "images").glob("*.png"))]


def fitting_half(patient_id: str) -> bool:
    """Whether a patient's films are in the half the orientation check is fitted on."""
    return int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % 2 == 0


# --- the grey statistics ---------------------------------------------------------------------------------


def fit_statistics(images: Iterable[np.ndarray]) -> OodParameters:
    """Fit the grey statistics on real chest X-rays (8-bit grey arrays): ranges, mean,
    covariance and templates.

    Raises:
        ValueError: fewer than 50 images.
    """
    layouts: list[np.ndarray] = []
    edge_layouts: list[np.ndarray] = []
    rows: list[dict[str, float]] = []
    for pixels in images:
        rows.append(features(pixels))
        layout, edges = chest_layouts(pixels)
        layouts.append(layout)
        edge_layouts.append(edges)
    if len(rows) < 50:
        raise ValueError(f"fitting needs at least 50 chest X-rays, got {len(rows)}")
    template, edge_template = _z(np.mean(layouts, axis=0)), _z(np.mean(edge_layouts, axis=0))
    for row, layout, edges in zip(rows, layouts, edge_layouts, strict=True):
        row["template"] = float((layout * template).mean())
        row["edge_layout"] = float((edges * edge_template).mean())
    table = np.array([[row[name] for name in FEATURES] for row in rows], np.float64)
    medians = np.median(table, axis=0)
    low = np.percentile(table, RANGE_QUANTILE, axis=0)
    high = np.percentile(table, 100 - RANGE_QUANTILE, axis=0)
    low, high = low - RANGE_MARGIN * (medians - low), high + RANGE_MARGIN * (high - medians)
    mean = table.mean(axis=0)
    covariance = np.cov(table.T)
    covariance += np.eye(len(FEATURES)) * 1e-6 * float(np.trace(covariance))
    inverse = np.linalg.inv(covariance)
    centred = table - mean
    distances = np.sqrt(np.einsum("ij,jk,ik->i", centred, inverse, centred))
    limit = float(np.percentile(distances, DISTANCE_QUANTILE)) * DISTANCE_MARGIN

    def rounded(values: Iterable[float], digits: int = 4) -> tuple[float, ...]:
        return tuple(round(float(v), digits) for v in values)

    return OodParameters(
        ranges={name: (round(float(lo), 4), round(float(hi), 4))
                for name, lo, hi in zip(FEATURES, low, high, strict=True)},
        medians={name: round(float(m), 4) for name, m in zip(FEATURES, medians, strict=True)},
        mean=rounded(mean, 6),
        covariance_inverse=tuple(rounded(row, 6) for row in inverse),
        distance_limit=round(limit, 3),
        template=tuple(rounded(row, 3) for row in template),
        edge_template=tuple(rounded(row, 3) for row in edge_template),
        fitted_on=len(rows))


def _z(array: np.ndarray) -> np.ndarray:
    centred = array - array.mean()
    return centred / (float(np.sqrt((centred * centred).mean())) + 1e-6)


# --- the orientation check -------------------------------------------------------------------------------


def _logistic(rows: np.ndarray, targets: np.ndarray, *, l2: float, steps: int, rate: float) -> np.ndarray:
    """Weights of a logistic regression without intercept (full-batch gradient descent)."""
    weights = np.zeros(rows.shape[1])
    for _ in range(steps):
        probability = 1 / (1 + np.exp(-np.clip(rows @ weights, -50, 50)))
        weights -= rate * (rows.T @ (probability - targets) / len(rows) + l2 * weights)
    return weights


def fit_orientation(films: Iterable[np.ndarray], *, false_refusals: float = ORIENTATION_FALSE_REFUSALS
                    ) -> OrientationParameters:
    """Fit both orientation checks on upright films, with margins that refuse at most
    ``false_refusals`` of those same films each; weights rounded to 4 decimals.

    Raises:
        ValueError: fewer than 50 films.
    """
    layouts = [orientation.layout(pixels) for pixels in films]
    if len(layouts) < 50:
        raise ValueError(f"fitting needs at least 50 upright films, got {len(layouts)}")
    # The uprightness map: softmax over each film's eight versions, the upright one the target.
    views = np.stack([orientation.turn_views(big) for big in layouts]).astype(np.float64)
    turn = np.zeros(views.shape[2])
    for _ in range(1500):
        logits = views @ turn
        logits -= logits.max(axis=1, keepdims=True)
        probability = np.exp(logits)
        probability /= probability.sum(axis=1, keepdims=True)
        probability[:, 0] -= 1.0
        turn -= 1.0 * (np.einsum("nk,nkd->d", probability, views) / len(views) + 1e-3 * turn)
    # The mirror check: upright films against their mirror images (features change sign).
    mirror_rows = np.stack([orientation.mirror_features(big) for big in layouts]).astype(np.float64)
    mirror = _logistic(np.vstack([mirror_rows, -mirror_rows]),
                       np.r_[np.ones(len(layouts)), np.zeros(len(layouts))], l2=0.1, steps=1500, rate=0.5)
    provisional = OrientationParameters(
        np.round(turn.reshape(orientation.SIZE, orientation.SIZE).astype(np.float32), 4),
        np.round(mirror.astype(np.float32), 4), math.inf, math.inf, len(layouts))
    scores = [orientation.evidence(big, provisional)[1:] for big in layouts]
    return OrientationParameters(provisional.turn_weights, provisional.mirror_weights,
                                 _margin([s[0] for s in scores], false_refusals),
                                 _margin([s[1] for s in scores], false_refusals), len(layouts))


def _margin(upright: Sequence[float], false_refusals: float) -> float:
    """The smallest margin above all but ``false_refusals`` of the upright films' values."""
    return round(float(np.quantile(np.asarray(upright, np.float64), 1 - false_refusals)) + 1e-3, 3)


# --- the files -------------------------------------------------------------------------------------------


def statistics_json(parameters: OodParameters) -> dict[str, Any]:
    """``statistics.json``'s content (read back by ``edge_agent.guard_model.statistics_from_json``)."""
    return {"ranges": {name: list(parameters.ranges[name]) for name in FEATURES},
            "medians": {name: parameters.medians[name] for name in FEATURES},
            "mean": list(parameters.mean),
            "covariance_inverse": [list(row) for row in parameters.covariance_inverse],
            "distance_limit": parameters.distance_limit,
            "template": [list(row) for row in parameters.template],
            "edge_template": [list(row) for row in parameters.edge_template],
            "fitted_on": parameters.fitted_on}


def orientation_json(parameters: OrientationParameters) -> dict[str, Any]:
    """``orientation.json``'s content (read back by ``edge_agent.guard_model.orientation_from_json``)."""
    return {"size": orientation.SIZE, "mirror_size": orientation.MIRROR_SIZE,
            "turn_weights": [[round(float(v), 4) for v in row] for row in parameters.turn_weights],
            "mirror_weights": [round(float(v), 4) for v in parameters.mirror_weights],
            "turn_margin": parameters.turn_margin, "mirror_margin": parameters.mirror_margin,
            "fitted_on": parameters.fitted_on}


def dump(value: dict[str, Any]) -> str:
    """Indented JSON with each innermost list of numbers on one line: small diffs, same bytes
    for the same numbers."""
    text = json.dumps(value, indent=2, allow_nan=False)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  text) + "\n"


def write_guard(data: Path, models_dir: Path, version: str, *, command: str) -> ModelEntry:
    """Fit both halves of the guard on the NIH sample in ``data``, write their files under
    ``<models_dir>/chest-guard/<version>/`` and add the entry to the manifest.

    Raises:
        ConfigurationError: no NIH sample, or that version exists already (a new
            fit needs a new version: edges check the files by their sha256).
    """
    manifest = load_manifest(models_dir, missing_ok=True)
    if any(m.name == GUARD_MODEL and m.version == version for m in manifest.models):
        raise ConfigurationError(f"{GUARD_MODEL}@{version} is in {models_dir / 'manifest.json'} already: "
                                 "give a new --version")
    films = nih_films(data)
    statistics = fit_statistics(film.pixels for film in films)
    upright = [film.pixels for film in films if fitting_half(film.patient)]
    turns = fit_orientation(upright)
    folder = models_dir / GUARD_MODEL / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATISTICS_FILE).write_text(dump(statistics_json(statistics)), encoding="utf-8")
    (folder / ORIENTATION_FILE).write_text(dump(orientation_json(turns)), encoding="utf-8")
    refused = _refused(films, statistics, turns)
    entry = ModelEntry(
        name=GUARD_MODEL, version=version, task="guard", labels=list(FEATURES),
        input=InputContract(size=256, resize="stretch", channels=1, mean=0.0, std=1.0),
        files=[describe_file(models_dir, folder / STATISTICS_FILE, "json"),
               describe_file(models_dir, folder / ORIENTATION_FILE, "json")],
        outputs={"ok": "whether the image looks like an upright chest radiograph (else it is not diagnosed)",
                 "score": "0 for a typical chest X-ray, 1 at the edge of what real chest X-rays show",
                 "reasons": "why not, for people: each statistic outside its range, a negative, a turn",
                 "orientation": "how a chest film refused for its orientation looks turned or mirrored"},
        metrics=[Metric(name="refused_in_sample", value=round(refused / len(films), 4),
                        data=f"the whole guard on the {len(films)} NIH films the statistics were fitted "
                             f"on (in-sample; {refused} refused); held-out figures: goldenhour train "
                             "guard-report and orientation-report")],
        command=command,
        data=(f"NIH ChestX-ray14 sample in the data folder: nih-cxr14-sample/images ({len(films)} PNGs; "
              "patients from nih-cxr14-sample/labels.csv). Grey statistics: all of them; orientation: "
              f"the {len(upright)} films of patients with sha256(Patient ID) even"),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes="Not for clinical use. Summary statistics only: no image and no per-image answer is stored.")
    save_manifest(manifest.upsert(entry), models_dir)
    return entry


def _refused(films: Sequence[Film], statistics: OodParameters, turns: OrientationParameters) -> int:
    from edge_agent.ood import check_chest_radiograph

    return sum(not check_chest_radiograph(film.pixels, parameters=statistics, orientation_parameters=turns).ok
               for film in films)
