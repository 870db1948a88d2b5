"""The chest-radiograph guard's fitted parameters, a model in ``models/``.

``goldenhour train guard`` fits them on real chest X-rays and writes two JSON
files with their manifest entry (task ``guard``): ``statistics.json`` for the
grey-level statistics of :mod:`edge_agent.ood` and ``orientation.json`` for
:mod:`edge_agent.orientation`. The edge reads them through the manifest, each
file checked against its sha256, once per process (:func:`shipped_guard`), from
the package's own models folder (``GOLDENHOUR_EDGE_GUARD_MODELS_DIR`` names
another): model updates replace classifiers and detectors, never the guard.
The edge reads it when it starts (:func:`edge_guard`), so a missing or altered
guard stops the start, not the first diagnosis.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.manifest import DEFAULT_MODELS_DIR, ModelEntry, ModelManifestError, load_manifest, verified_path

logger = logging.getLogger(__name__)

GUARD_MODEL = "chest-guard"
STATISTICS_FILE = "statistics.json"
ORIENTATION_FILE = "orientation.json"


@dataclass(frozen=True)
class OodParameters:
    """What the grey-level statistics were fitted to: per statistic (in
    :data:`edge_agent.ood.FEATURES` order) a range and a median, their mean and
    inverse covariance, the distance limit and the two 16 x 16 templates."""

    ranges: Mapping[str, tuple[float, float]]
    medians: Mapping[str, float]
    mean: Sequence[float]
    covariance_inverse: Sequence[Sequence[float]]
    distance_limit: float
    template: Sequence[Sequence[float]]
    edge_template: Sequence[Sequence[float]]
    fitted_on: int

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean, inverse covariance, template and edge template as arrays."""
        return (np.asarray(self.mean, np.float64), np.asarray(self.covariance_inverse, np.float64),
                np.asarray(self.template, np.float32), np.asarray(self.edge_template, np.float32))


@dataclass(frozen=True)
class OrientationParameters:
    """What :func:`edge_agent.orientation.check_orientation` was fitted to."""

    turn_weights: np.ndarray
    mirror_weights: np.ndarray
    turn_margin: float
    mirror_margin: float
    fitted_on: int


@dataclass(frozen=True)
class GuardParameters:
    """Both halves of the guard, and the model they came from (``name@version``)."""

    statistics: OodParameters
    orientation: OrientationParameters
    key: str


def _tuples(rows: Any, shape: tuple[int, ...], what: str) -> Any:
    """``rows`` as nested tuples of floats after checking their shape."""
    array = np.asarray(rows, np.float64)
    if array.shape != shape or not np.isfinite(array).all():
        raise ValueError(f"{what} must be {shape} finite numbers, not {array.shape}")
    return tuple(map(float, array)) if array.ndim == 1 else tuple(tuple(map(float, row)) for row in array)


def statistics_from_json(data: Mapping[str, Any], labels: Sequence[str]) -> OodParameters:
    """The grey statistics' parameters from ``statistics.json`` (statistics named in ``labels``' order).

    Raises:
        ValueError: a field is missing or has the wrong shape.
    """
    names, n = list(labels), len(labels)
    if list(data["ranges"]) != names or list(data["medians"]) != names:
        raise ValueError(f"ranges and medians must name the statistics {names} in that order")
    return OodParameters(
        ranges={name: tuple(_tuples(data["ranges"][name], (2,), f"range of {name}")) for name in names},
        medians={name: float(data["medians"][name]) for name in names},
        mean=_tuples(data["mean"], (n,), "mean"),
        covariance_inverse=_tuples(data["covariance_inverse"], (n, n), "covariance_inverse"),
        distance_limit=float(data["distance_limit"]),
        template=_tuples(data["template"], (16, 16), "template"),
        edge_template=_tuples(data["edge_template"], (16, 16), "edge_template"),
        fitted_on=int(data["fitted_on"]))


def orientation_from_json(data: Mapping[str, Any]) -> OrientationParameters:
    """The orientation check's parameters from ``orientation.json``.

    Raises:
        ValueError: a field is missing or has the wrong shape.
    """
    size, mirror_size = int(data["size"]), int(data["mirror_size"])
    turn = np.asarray(_tuples(data["turn_weights"], (size, size), "turn_weights"), np.float32)
    mirror = np.asarray(_tuples(data["mirror_weights"], (2 * mirror_size * (mirror_size // 2),),
                                "mirror_weights"), np.float32)
    return OrientationParameters(turn, mirror, float(data["turn_margin"]), float(data["mirror_margin"]),
                                 int(data["fitted_on"]))


def _read(models_dir: Path, entry: ModelEntry, filename: str) -> dict[str, Any]:
    matches = [f for f in entry.files if f.path.rsplit("/", 1)[-1] == filename and f.format == "json"]
    if not matches:
        raise ModelManifestError(f"{entry.key} has no {filename}")
    path = verified_path(models_dir, entry, matches[0])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelManifestError(f"{path} of {entry.key} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelManifestError(f"{path} of {entry.key} is not a JSON object")
    return data


def load_guard(models_dir: Path = DEFAULT_MODELS_DIR, name: str = GUARD_MODEL,
               version: str | None = None) -> GuardParameters:
    """The guard's parameters as the manifest lists them (newest version by default).

    Raises:
        ModelManifestError: no such model, not a guard, a file missing, altered
            (sha256) or malformed.
    """
    entry = load_manifest(models_dir).find(name, version)
    if entry.task != "guard":
        raise ModelManifestError(f"{entry.key} is a {entry.task}, not the image guard")
    statistics, orientation = _read(models_dir, entry, STATISTICS_FILE), _read(models_dir, entry,
                                                                              ORIENTATION_FILE)
    try:
        guard = GuardParameters(statistics_from_json(statistics, entry.labels),
                                orientation_from_json(orientation), entry.key)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelManifestError(f"{entry.key}: malformed parameters: {type(exc).__name__}: {exc}") from exc
    logger.info("image guard loaded", extra={"model": entry.key})
    return guard


@functools.cache
def shipped_guard() -> GuardParameters:
    """The guard of the package's models folder, loaded on first use and kept."""
    return load_guard()


def edge_guard(models_dir: Path = DEFAULT_MODELS_DIR) -> GuardParameters:
    """The guard an edge starts with: :func:`shipped_guard` for the package's
    models folder, else the newest guard listed in ``models_dir``'s manifest.

    Raises:
        ModelManifestError: the guard is missing, altered or malformed (the
            message says that the edge does not diagnose without it).
    """
    try:
        return shipped_guard() if models_dir == DEFAULT_MODELS_DIR else load_guard(models_dir)
    except ModelManifestError as exc:
        raise ModelManifestError(f"the chest-radiograph guard cannot be loaded, and the edge does "
                                 f"not diagnose unguarded: {exc}") from exc
