"""Out-of-distribution guard: is this image a chest radiograph at all?

The classifier answers for any picture it is given, so the edge first asks a
simpler question with simple, explainable image statistics, computed on the
image shrunk to 256 x 256 (see ``docs/edge-ingest.md``):

* colour: a PNG or JPEG whose channels differ materially is a photo, not an
  X-ray (:attr:`edge_agent.imaging.LoadedImage.source_was_colour`);
* shape: a side more than :data:`MAX_ASPECT` times the other;
* ten grey-level statistics (:data:`FEATURE_LABELS`): contrast, histogram
  entropy, pure black or white pixels, left-right symmetry, a bright
  mediastinum between darker lungs, edge density, fine texture, border
  against centre, and the resemblance of the image and of its edges to an
  average chest X-ray. Each must lie in the range seen on real chest X-rays,
  and together they must not be an unusual combination (Mahalanobis
  distance to the real chest X-rays' mean);
* polarity: an image that looks like a chest X-ray only once its grey levels
  are inverted is a negative (a MONOCHROME1/2 mix-up), which the classifier
  would misread;
* orientation: a chest film turned or mirrored (:mod:`edge_agent.orientation`).

The ranges, mean, covariance and templates are a model in ``models/``
(``chest-guard``, :mod:`edge_agent.guard_model`): summary statistics fitted on
the 1,335 NIH ChestX-ray14 images of the team's data folder by ``goldenhour
train guard`` (no per-image answer is stored); ``goldenhour train
guard-report`` measures the false-reject rate on real chest X-rays and the
detection rate on other images. This module is only the runtime check.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from edge_agent.guard_model import GuardParameters, OodParameters, OrientationParameters, shipped_guard
from edge_agent.orientation import check_orientation, undo
from edge_agent.orientation import trim_frame as _trim
from shared.errors import NotChestRadiographError
from shared.manifest import ModelManifestError

__all__ = ["FEATURES", "FEATURE_LABELS", "OodParameters", "OodResult", "check_chest_radiograph",
           "chest_layouts", "features", "shipped_parameters", "statistics_of"]

logger = logging.getLogger(__name__)

MAX_ASPECT = 2.0
"""Chest detectors are 35 x 43 cm or 43 x 43 cm: no chest X-ray is twice as long as wide."""
MIN_SIDE = 32
"""Smaller images cannot be judged (``load_image`` refuses under 64 pixels anyway)."""

FEATURE_LABELS: dict[str, str] = {
    "contrast": "grey-level spread (standard deviation)",
    "entropy": "histogram entropy (bits)",
    "saturated": "fraction of pure black or white pixels",
    "symmetry": "left-right symmetry",
    "mediastinum": "bright mediastinum between darker lungs",
    "edge_density": "edge density",
    "fine_texture": "fine texture (grain, noise, print)",
    "border": "border brightness against the centre",
    "template": "resemblance to an average chest X-ray",
    "edge_layout": "edges laid out like a chest X-ray's",
}
"""The statistics, in the order of :attr:`OodParameters.mean` (the guard model's labels), with their
names for people."""
FEATURES: tuple[str, ...] = tuple(FEATURE_LABELS)

_WORK = 256
_TEMPLATE = 16


@dataclass(frozen=True)
class OodResult:
    """The guard's verdict.

    ``score`` measures how far the grey-level statistics are from real chest
    X-rays: 0 is typical, 1 the edge of what real chest X-rays show, above 1
    outside it. ``ok`` also needs the image not to be colour nor a negative.
    """

    ok: bool
    score: float
    reasons: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    orientation: str | None = None
    """A chest film refused because it looks turned or mirrored: how (see :mod:`edge_agent.orientation`)."""

    def raise_if_not_ok(self, source: str = "image") -> None:
        """Raise :class:`NotChestRadiographError` with the reasons when not ok."""
        if not self.ok:
            reasons = "; ".join(self.reasons)
            if self.orientation:  # a chest film, turned: the reason says how
                raise NotChestRadiographError(f"{source}: {reasons}"[:500])
            raise NotChestRadiographError(f"{source}: not a chest radiograph ({reasons})"[:500])


def statistics_of(guard: GuardParameters) -> OodParameters:
    """The grey statistics' parameters of ``guard``, once checked against what this edge computes.

    Raises:
        ModelManifestError: the guard was fitted to other statistics.
    """
    parameters = guard.statistics
    if tuple(parameters.ranges) != FEATURES:
        raise ModelManifestError(f"{guard.key} was fitted to the statistics "
                                 f"{list(parameters.ranges)}, this edge computes {list(FEATURES)}")
    return parameters


def shipped_parameters() -> OodParameters:
    """The grey statistics' parameters of the shipped guard model (read once per process).

    Raises:
        ModelManifestError: the guard model is missing, altered or fitted to other statistics.
    """
    return statistics_of(shipped_guard())


# --- the statistics --------------------------------------------------------------------------------------


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    """Area-average ``array`` (floats in 0..1) to ``size`` x ``size``."""
    image = Image.fromarray(np.ascontiguousarray(array, np.float32))  # mode F
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), np.float32)


def _z(array: np.ndarray) -> np.ndarray:
    centred = array - array.mean()
    return centred / (float(np.sqrt((centred * centred).mean())) + 1e-6)


def _layouts(stretched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trimmed image and its edge magnitude at template size, each z-scored."""
    trimmed = _trim(_resize(stretched, 128))
    small = _resize(trimmed, 64)
    gy, gx = np.gradient(small)
    edges = np.hypot(gx, gy)
    return _z(_resize(small, _TEMPLATE)), _z(_resize(edges, _TEMPLATE))


def chest_layouts(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A grey image's 16 x 16 layout and edge layout, contrast-stretched and z-scored:
    what the templates average (``goldenhour train guard``) and are compared with."""
    raw = _resize(np.asarray(pixels, np.float32), _WORK)
    low, high = np.percentile(raw, [1, 99])
    return _layouts(np.clip((raw - low) / max(high - low, 1e-6), 0, 1))


def features(pixels: np.ndarray, template: np.ndarray | None = None,
             edge_template: np.ndarray | None = None) -> dict[str, float]:
    """The ten statistics of a grey image (uint8, 0 = black).

    Without templates, ``template`` and ``edge_layout`` are 0 (used while fitting).
    """
    grey = np.asarray(pixels)
    if grey.ndim != 2 or min(grey.shape) < MIN_SIDE:
        raise ValueError(f"expected a 2-D grey image of at least {MIN_SIDE} pixels, got {grey.shape}")
    raw = _resize(grey.astype(np.float32), _WORK)  # 0..255, area-averaged
    low, high = np.percentile(raw, [1, 99])
    stretched = np.clip((raw - low) / (high - low), 0, 1) if high > low else np.zeros_like(raw)
    out: dict[str, float] = {"contrast": float(raw.std())}
    counts, _ = np.histogram(raw, bins=32, range=(0, 256))
    p = counts[counts > 0] / counts.sum()
    out["entropy"] = float(-(p * np.log2(p)).sum())
    out["saturated"] = float(((raw <= 1.5) | (raw >= 253.5)).mean())

    s64 = _resize(stretched, 64)
    spread = float(s64.std()) + 1e-6
    centred = s64 - s64.mean()
    out["symmetry"] = float((centred * centred[:, ::-1]).sum() / ((centred * centred).sum() + 1e-9))
    column = s64[13:45].mean(axis=0)  # rows 20%..70%: the lungs
    lungs = np.r_[column[13:22], column[42:51]].mean()
    out["mediastinum"] = float((column[28:36].mean() - lungs) / spread)
    ring = np.ones((64, 64), bool)
    ring[6:-6, 6:-6] = False
    out["border"] = float((s64[ring].mean() - s64[16:48, 16:48].mean()) / spread)

    s128 = _resize(stretched, 128)
    gy, gx = np.gradient(s128)
    out["edge_density"] = float((np.hypot(gx, gy) > 0.08).mean())
    coarse = Image.fromarray(_resize(s128, 32))
    blurred = np.asarray(coarse.resize((128, 128), Image.Resampling.BILINEAR), np.float32)
    out["fine_texture"] = float(np.abs(s128 - blurred).mean() / (float(s128.std()) + 1e-6))

    layout, edges = _layouts(stretched)
    out["template"] = float((layout * template).mean()) if template is not None else 0.0
    out["edge_layout"] = float((edges * edge_template).mean()) if edge_template is not None else 0.0
    return {name: out[name] for name in FEATURES}


# --- the verdict -------------------------------------------------------------------------------------------


def _deviation(value: float, low: float, median: float, high: float) -> float:
    """0 at the median, 1 at the edge of the range, linear in between and beyond."""
    if value >= median:
        return (value - median) / max(high - median, 1e-9)
    return (median - value) / max(median - low, 1e-9)


def _judge(values: dict[str, float], parameters: OodParameters) -> tuple[float, list[str]]:
    """(score, reasons) of one set of statistics."""
    mean, inverse, _, _ = parameters.arrays()
    reasons: list[str] = []
    deviations: dict[str, float] = {}
    for name in FEATURES:
        low, high = parameters.ranges[name]
        deviations[name] = _deviation(values[name], low, parameters.medians[name], high)
        if not low <= values[name] <= high:
            reasons.append(f"{FEATURE_LABELS[name]} {values[name]:.2f} is outside the range of real chest "
                           f"X-rays ({low:.2f} to {high:.2f})")
    vector = np.array([values[name] for name in FEATURES]) - mean
    distance = float(math.sqrt(max(float(vector @ inverse @ vector), 0.0)))
    if distance > parameters.distance_limit and not reasons:
        worst = sorted(FEATURES, key=lambda name: -deviations[name])[:3]
        detail = ", ".join(
            f"{FEATURE_LABELS[name]} {values[name]:.2f} (typical {parameters.medians[name]:.2f})"
            for name in worst)
        reasons.append(f"an unusual combination of statistics for a chest X-ray (distance {distance:.1f}, "
                       f"real chest X-rays up to {parameters.distance_limit:.1f}): {detail}")
    score = max(max(deviations.values()), distance / parameters.distance_limit)
    return score, reasons


def check_chest_radiograph(pixels_uint8: np.ndarray, *, source_was_colour: bool = False,
                           parameters: OodParameters | None = None,
                           orientation_parameters: OrientationParameters | None = None) -> OodResult:
    """Whether an 8-bit grey image (0 = black) looks like an upright chest radiograph.

    Args:
        pixels_uint8: the image as :func:`edge_agent.imaging.load_image` returns it.
        source_was_colour: the file was a colour PNG or JPEG (a photo).
        parameters: fitted statistics; the shipped guard model's by default.
        orientation_parameters: the orientation check's; the shipped guard model's by default.

    Raises:
        ModelManifestError: no parameters given and the shipped guard model is
            missing or altered (the edge refuses to diagnose unguarded).
    """
    parameters = parameters or shipped_parameters()
    pixels = np.asarray(pixels_uint8)
    reasons: list[str] = []
    if source_was_colour:
        reasons.append("a colour image: X-rays are grey-scale (a photo or a screenshot?)")
    if pixels.ndim != 2 or min(pixels.shape) < MIN_SIDE:
        shape = f"not a grey image of at least {MIN_SIDE} pixels: {pixels.shape}"
        return OodResult(ok=False, score=math.inf, reasons=[*reasons, shape])
    aspect = max(pixels.shape) / min(pixels.shape)
    if aspect > MAX_ASPECT:
        reasons.append(f"{pixels.shape[1]}x{pixels.shape[0]} pixels: a chest X-ray is not {aspect:.1f} times "
                       f"as long as wide")
    if int(pixels.min()) == int(pixels.max()):
        return OodResult(ok=False, score=math.inf, reasons=[*reasons, "a blank image (one grey level)"])
    _, _, template, edge_template = parameters.arrays()
    values = features(pixels, template, edge_template)
    score, grey_reasons = _judge(values, parameters)
    if grey_reasons:
        negative = features(255 - pixels.astype(np.uint8), template, edge_template)
        negative_score, negative_reasons = _judge(negative, parameters)
        if not negative_reasons:
            grey_reasons = ["looks like a chest X-ray in negative (inverted grey levels): check the "
                            "file's MONOCHROME1/MONOCHROME2 labelling"]
            score = max(score, 1.0 + 1e-6)
            logger.debug("negative chest X-ray suspected", extra={"negative_score": negative_score})
    turned = None
    negative = bool(grey_reasons) and grey_reasons[0].startswith("looks like a chest X-ray in negative")
    if not reasons and not negative:
        # A chest film turned or mirrored is refused saying how, also when the grey
        # statistics (which a 180 degree turn upsets) refuse it: if turning it back
        # satisfies them, the turn is its only fault.
        verdict = check_orientation(pixels, orientation_parameters)
        if not verdict.ok and verdict.reason and (not grey_reasons
                                                  or _straightens(pixels, verdict.looks, parameters)):
            turned, grey_reasons = verdict.looks, [verdict.reason]
    reasons.extend(grey_reasons)
    ok = not reasons
    return OodResult(ok=ok, score=round(score, 4), reasons=reasons,
                     features={name: round(value, 4) for name, value in values.items()},
                     orientation=turned)


def _straightens(pixels: np.ndarray, looks: str, parameters: OodParameters) -> bool:
    """Whether the film, turned back, passes the grey statistics (its only fault is the turn)."""
    _, _, template, edge_template = parameters.arrays()
    straight = np.ascontiguousarray(undo(looks, pixels))
    return not _judge(features(straight, template, edge_template), parameters)[1]
