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

The ranges, mean, covariance and templates were fitted on the 1,335 NIH
ChestX-ray14 images of the team's data folder with ``python -m
edge_agent.ood --fit`` (no per-image answers are stored: only these summary
statistics); ``python -m edge_agent.ood --report`` measures the false-reject
rate on real chest X-rays and the detection rate on other images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent.orientation import OrientationParameters, check_orientation, undo
from edge_agent.orientation import trim_frame as _trim
from shared.errors import NotChestRadiographError

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
"""The statistics, in the order of :attr:`OodParameters.mean`, with their names for people."""
FEATURES: tuple[str, ...] = tuple(FEATURE_LABELS)

_WORK = 256
_TEMPLATE = 16
_RANGE_QUANTILE = 0.1
"""Percent of real chest X-rays below (and above) each feature's fitted core range..."""
_RANGE_MARGIN = 0.5
"""...which is then widened by this fraction of its distance to the median."""
_DISTANCE_QUANTILE = 99.5
_DISTANCE_MARGIN = 1.1


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


@dataclass(frozen=True)
class OodParameters:
    """What the guard was fitted to (see :func:`fit`)."""

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
        parameters: fitted statistics; the shipped ones by default.
        orientation_parameters: the orientation check's; the shipped ones by default.
    """
    parameters = parameters or DEFAULT_PARAMETERS
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


# --- fitting ------------------------------------------------------------------------------------------------


def fit(images: Iterable[np.ndarray]) -> OodParameters:
    """Fit the guard on real chest X-rays (8-bit grey arrays): ranges, mean,
    covariance and templates. Summary statistics only."""
    layouts: list[np.ndarray] = []
    edge_layouts: list[np.ndarray] = []
    rows: list[dict[str, float]] = []
    for pixels in images:
        rows.append(features(pixels))
        raw = _resize(np.asarray(pixels, np.float32), _WORK)
        low, high = np.percentile(raw, [1, 99])
        layout, edges = _layouts(np.clip((raw - low) / max(high - low, 1e-6), 0, 1))
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
    low = np.percentile(table, _RANGE_QUANTILE, axis=0)
    high = np.percentile(table, 100 - _RANGE_QUANTILE, axis=0)
    low, high = low - _RANGE_MARGIN * (medians - low), high + _RANGE_MARGIN * (high - medians)
    mean = table.mean(axis=0)
    covariance = np.cov(table.T)
    covariance += np.eye(len(FEATURES)) * 1e-6 * float(np.trace(covariance))
    inverse = np.linalg.inv(covariance)
    centred = table - mean
    distances = np.sqrt(np.einsum("ij,jk,ik->i", centred, inverse, centred))
    limit = float(np.percentile(distances, _DISTANCE_QUANTILE)) * _DISTANCE_MARGIN

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


def _wrapped(values: Iterable[float], indent: int) -> str:
    """A tuple literal of ``values`` wrapped to fit 110 columns."""
    import textwrap

    body = textwrap.fill(", ".join(repr(float(v)) for v in values), width=104 - indent,
                         break_long_words=False)
    pad = " " * (indent + 4)
    return "(\n" + textwrap.indent(body, pad) + ",\n" + " " * indent + ")"


def parameters_source(parameters: OodParameters) -> str:
    """Python source of ``parameters``, to paste as :data:`DEFAULT_PARAMETERS`."""
    def matrix(rows: Sequence[Sequence[float]]) -> str:
        return "(\n" + "".join(f"        {_wrapped(row, 8)},\n" for row in rows) + "    )"

    ranges = "".join(f"        {name!r}: {parameters.ranges[name]!r},\n" for name in FEATURES)
    medians = "".join(f"        {name!r}: {parameters.medians[name]!r},\n" for name in FEATURES)
    return (f"DEFAULT_PARAMETERS = OodParameters(\n    ranges={{\n{ranges}    }},\n"
            f"    medians={{\n{medians}    }},\n    mean={_wrapped(parameters.mean, 4)},\n"
            f"    covariance_inverse={matrix(parameters.covariance_inverse)},\n"
            f"    distance_limit={parameters.distance_limit!r},\n"
            f"    template={matrix(parameters.template)},\n"
            f"    edge_template={matrix(parameters.edge_template)},\n"
            f"    fitted_on={parameters.fitted_on},\n)\n")


# --- fitted on the 1,335 NIH ChestX-ray14 images (python -m edge_agent.ood --fit) ---------------------------
# BEGIN FITTED PARAMETERS
DEFAULT_PARAMETERS = OodParameters(
    ranges={
        'contrast': (11.2137, 96.1495),
        'entropy': (2.3041, 5.0183),
        'saturated': (-0.0081, 0.6463),
        'symmetry': (-0.6081, 1.0651),
        'mediastinum': (-1.4044, 2.7317),
        'edge_density': (-0.034, 0.3097),
        'fine_texture': (0.0015, 0.2612),
        'border': (-2.4559, 1.9349),
        'template': (-1.0356, 1.0147),
        'edge_layout': (-0.4019, 0.867),
    },
    medians={
        'contrast': 61.759,
        'entropy': 4.5958,
        'saturated': 0.0162,
        'symmetry': 0.774,
        'mediastinum': 0.9364,
        'edge_density': 0.0898,
        'fine_texture': 0.0967,
        'border': -0.4216,
        'template': 0.8082,
        'edge_layout': 0.5097,
    },
    mean=(
        59.306786, 4.515062, 0.03354, 0.721583, 0.938161, 0.090218, 0.098428, -0.416332, 0.78675, 0.483444,
    ),
    covariance_inverse=(
        (
            0.047445, -1.310951, -3.741734, -0.244753, 0.019531, -2.663233, 3.832722, 0.145105, 0.306577,
            0.234963,
        ),
        (
            -1.310951, 50.14021, 117.000833, 6.352712, 0.538603, 23.500788, -72.305773, -6.521551,
            -22.066951, -0.66233,
        ),
        (
            -3.741734, 117.000833, 830.851054, -5.501267, 2.688252, 43.873744, -170.119298, -3.182084,
            -48.609546, 57.705831,
        ),
        (
            -0.244753, 6.352712, -5.501267, 41.390654, -6.922095, 26.9974, 17.795567, 0.23373, -23.834793,
            -6.955948,
        ),
        (
            0.019531, 0.538603, 2.688252, -6.922095, 10.628073, -46.88719, -11.60826, -4.500477, -4.823828,
            -0.673276,
        ),
        (
            -2.663233, 23.500788, 43.873744, 26.9974, -46.88719, 2001.507471, -1762.097098, 30.116703,
            0.679278, 38.225164,
        ),
        (
            3.832722, -72.305773, -170.119298, 17.795567, -11.60826, -1762.097098, 3214.674413, -4.519833,
            73.467103, -66.390399,
        ),
        (
            0.145105, -6.521551, -3.182084, 0.23373, -4.500477, 30.116703, -4.519833, 7.945138, 8.053641,
            -0.225979,
        ),
        (
            0.306577, -22.066951, -48.609546, -23.834793, -4.823828, 0.679278, 73.467103, 8.053641,
            124.576039, -30.297013,
        ),
        (
            0.234963, -0.66233, 57.705831, -6.955948, -0.673276, 38.225164, -66.390399, -0.225979,
            -30.297013, 72.100732,
        ),
    ),
    distance_limit=7.941,
    template=(
        (
            -2.382, -2.345, -2.26, -2.152, -1.905, -1.233, -0.269, 0.374, 0.415, -0.139, -1.047, -1.769,
            -2.052, -2.162, -2.207, -2.281,
        ),
        (
            -1.888, -1.597, -1.417, -1.305, -1.177, -0.854, -0.27, 0.219, 0.259, -0.162, -0.747, -1.116,
            -1.251, -1.347, -1.463, -1.852,
        ),
        (
            -0.972, -0.546, -0.385, -0.388, -0.514, -0.637, -0.439, 0.074, 0.165, -0.348, -0.685, -0.562,
            -0.397, -0.376, -0.504, -0.919,
        ),
        (
            -0.274, 0.108, 0.162, -0.096, -0.571, -0.837, -0.634, 0.008, 0.193, -0.51, -0.906, -0.709,
            -0.215, 0.1, 0.098, -0.243,
        ),
        (
            0.066, 0.337, 0.333, -0.143, -0.858, -1.134, -0.766, 0.086, 0.352, -0.552, -1.151, -1.01,
            -0.329, 0.223, 0.286, 0.057,
        ),
        (
            0.118, 0.356, 0.359, -0.248, -0.984, -1.205, -0.738, 0.251, 0.556, -0.393, -1.14, -1.084,
            -0.426, 0.235, 0.299, 0.09,
        ),
        (
            -0.023, 0.256, 0.319, -0.317, -0.969, -1.065, -0.477, 0.499, 0.766, -0.053, -0.881, -1.005,
            -0.46, 0.199, 0.209, -0.056,
        ),
        (
            -0.274, 0.107, 0.258, -0.329, -0.845, -0.798, -0.123, 0.762, 0.987, 0.35, -0.474, -0.8, -0.43,
            0.148, 0.06, -0.316,
        ),
        (
            -0.533, -0.02, 0.207, -0.27, -0.616, -0.463, 0.197, 0.999, 1.2, 0.725, 0.002, -0.477, -0.335,
            0.104, -0.053, -0.575,
        ),
        (
            -0.735, -0.09, 0.181, -0.113, -0.276, -0.081, 0.5, 1.209, 1.374, 1.031, 0.485, -0.057, -0.156,
            0.083, -0.126, -0.766,
        ),
        (
            -0.898, -0.176, 0.201, 0.171, 0.199, 0.392, 0.841, 1.389, 1.504, 1.219, 0.826, 0.339, 0.058,
            0.076, -0.219, -0.93,
        ),
        (
            -1.075, -0.288, 0.275, 0.524, 0.724, 0.91, 1.207, 1.563, 1.623, 1.37, 1.061, 0.677, 0.341,
            0.116, -0.352, -1.102,
        ),
        (
            -1.269, -0.382, 0.394, 0.878, 1.168, 1.353, 1.518, 1.721, 1.741, 1.538, 1.299, 1.001, 0.648,
            0.225, -0.48, -1.291,
        ),
        (
            -1.428, -0.473, 0.486, 1.112, 1.452, 1.627, 1.737, 1.857, 1.851, 1.698, 1.501, 1.244, 0.874,
            0.309, -0.579, -1.454,
        ),
        (
            -1.526, -0.525, 0.536, 1.229, 1.603, 1.791, 1.884, 1.962, 1.944, 1.822, 1.661, 1.414, 1.018,
            0.381, -0.616, -1.54,
        ),
        (
            -1.467, -0.447, 0.623, 1.302, 1.663, 1.851, 1.93, 1.98, 1.966, 1.878, 1.746, 1.51, 1.122, 0.465,
            -0.562, -1.513,
        ),
    ),
    edge_template=(
        (
            0.494, -0.078, 0.183, 0.462, 1.107, 2.022, 1.609, 0.62, 0.588, 1.608, 2.318, 1.611, 1.183,
            1.158, 1.505, 1.363,
        ),
        (
            1.098, 0.799, 0.858, 0.811, 0.686, 0.652, 0.054, -0.578, -0.645, -0.022, 0.623, 0.712, 0.903,
            1.399, 2.078, 1.427,
        ),
        (
            1.847, 0.801, 0.629, 0.698, 0.933, 0.502, 0.118, -0.332, -0.351, 0.252, 0.453, 0.831, 0.752,
            0.678, 1.003, 1.663,
        ),
        (
            1.295, -0.212, -0.275, 0.303, 0.431, -0.018, -0.091, -0.238, -0.132, 0.357, -0.13, 0.382, 0.362,
            -0.192, -0.159, 0.841,
        ),
        (
            0.591, -0.972, -0.688, 0.295, -0.067, -0.478, 0.068, 0.071, -0.008, 0.783, -0.337, -0.214,
            0.393, -0.483, -0.826, 0.285,
        ),
        (
            0.432, -1.136, -0.517, 0.357, -0.289, -0.569, 0.362, 0.274, -0.248, 1.149, -0.127, -0.405,
            0.369, -0.248, -0.95, 0.114,
        ),
        (
            0.605, -0.834, -0.126, 0.371, -0.396, -0.321, 0.576, 0.006, -0.66, 0.861, 0.261, -0.354, 0.291,
            0.15, -0.634, 0.432,
        ),
        (
            0.936, -0.29, 0.239, 0.259, -0.393, -0.072, 0.582, -0.419, -1.082, 0.284, 0.377, -0.226, 0.192,
            0.451, -0.108, 0.746,
        ),
        (
            1.099, 0.195, 0.463, 0.084, -0.359, 0.035, 0.358, -0.774, -1.438, -0.361, 0.229, -0.057, 0.095,
            0.587, 0.308, 1.027,
        ),
        (
            1.258, 0.601, 0.5, -0.002, -0.246, -0.0, 0.091, -1.068, -1.659, -1.02, -0.283, -0.037, 0.004,
            0.593, 0.623, 1.166,
        ),
        (
            1.363, 0.828, 0.451, -0.15, -0.344, -0.256, -0.32, -1.398, -1.775, -1.332, -0.808, -0.209,
            -0.113, 0.486, 0.948, 1.369,
        ),
        (
            1.412, 0.935, 0.353, -0.386, -0.698, -0.81, -0.984, -1.718, -1.874, -1.439, -1.025, -0.528,
            -0.231, 0.409, 1.064, 1.496,
        ),
        (
            1.432, 0.99, 0.194, -0.776, -1.245, -1.458, -1.605, -1.974, -2.039, -1.637, -1.325, -0.869,
            -0.463, 0.3, 1.089, 1.522,
        ),
        (
            1.367, 0.953, 0.107, -1.052, -1.619, -1.904, -1.977, -2.158, -2.174, -1.899, -1.623, -1.248,
            -0.684, 0.187, 1.002, 1.445,
        ),
        (
            1.371, 0.979, 0.064, -1.111, -1.765, -2.096, -2.185, -2.277, -2.253, -2.067, -1.842, -1.459,
            -0.895, 0.133, 0.968, 1.482,
        ),
        (
            1.987, 1.597, 0.611, -0.553, -1.19, -1.557, -1.679, -1.8, -1.783, -1.612, -1.406, -1.008,
            -0.432, 0.561, 1.387, 1.953,
        ),
    ),
    fitted_on=1335,
)
# END FITTED PARAMETERS



# --- measuring: python -m edge_agent.ood --report | --fit [--write] -----------------------------------


def _nih_images(data: Path) -> list[tuple[str, str, np.ndarray]]:
    """(name, patient id, pixels) of the NIH sample, read as the edge reads them."""
    import csv

    from edge_agent.imaging import load_image

    folder = data / "nih-cxr14-sample"
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        patients = {row["Image Index"]: row["Patient ID"] for row in csv.DictReader(handle)}
    return [(path.name, patients.get(path.name, path.stem), load_image(path).pixels)
            for path in sorted((folder / "images").glob("*.png"))]


def synthetic_non_cxrs(seed: int = 0, size: int = 512) -> list[tuple[str, np.ndarray]]:
    """Grey images that are not chest X-rays: noise, gradients, text, blank, photo-like."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images: list[tuple[str, np.ndarray]] = [
        ("uniform noise", rng.integers(0, 256, (size, size), dtype=np.uint8)),
        ("gaussian noise", np.clip(rng.normal(128, 40, (size, size)), 0, 255).astype(np.uint8)),
        ("horizontal gradient", (x * 255).astype(np.uint8)),
        ("vertical gradient", (y * 255).astype(np.uint8)),
        ("diagonal gradient", ((x + y) * 127).astype(np.uint8)),
        ("radial gradient", np.clip(255 - np.hypot(x - 0.5, y - 0.5) * 360, 0, 255).astype(np.uint8)),
        ("blank black", np.zeros((size, size), np.uint8)),
        ("blank grey", np.full((size, size), 128, np.uint8)),
        ("sine pattern", ((np.sin(x * 60) + np.cos(y * 45) + 2) * 60).astype(np.uint8)),
        ("stripes", ((np.floor(x * 16) % 2) * 255).astype(np.uint8)),
        ("checkerboard", (((np.floor(x * 8) + np.floor(y * 8)) % 2) * 255).astype(np.uint8)),
    ]
    letters = list("abcdefghijklmnopqrstuvwxyz      ")
    for index in range(3):
        page = Image.new("L", (size, size), 255 if index < 2 else 0)
        draw = ImageDraw.Draw(page)
        for row in range(4 + index * 6, size, 12 + 2 * index):
            draw.text((8, row), "".join(rng.choice(letters, 90)), fill=0 if index < 2 else 255)
        images.append((f"text page {index + 1}", np.asarray(page)))
    for index in range(3):
        blobs = rng.normal(size=(8 * (index + 1), 8 * (index + 1)))
        cloud = Image.fromarray(((blobs - blobs.min()) / np.ptp(blobs) * 255).astype(np.uint8))
        images.append((f"smooth clouds {index + 1}", np.asarray(cloud.resize((size, size),
                                                                             Image.Resampling.BICUBIC))))
    for index in range(4):
        scene = 200 - y * 120 + rng.normal(0, 6, (size, size))
        horizon = 0.55 + 0.05 * np.sin(x * 12 + index)
        ground = y > horizon
        scene[ground] = 70 + 40 * index / 3 + rng.normal(0, 15, int(ground.sum()))
        photo = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(photo)
        for _ in range(5 + index):
            cx, cy = (int(v) for v in rng.integers(40, size - 40, 2))
            radius = int(rng.integers(10, 70))
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius),
                         fill=int(rng.integers(0, 255)))
        blurred = photo.filter(ImageFilter.GaussianBlur(1.5))
        images.append((f"photo-like scene {index + 1}", np.asarray(blurred)))
    return images


def _library_samples() -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, array) of scikit-image's and scikit-learn's bundled sample images
    (grey or RGB uint8), and notes on what is missing."""
    import warnings

    samples: list[tuple[str, np.ndarray]] = []
    notes: list[str] = []
    try:
        import skimage.data
    except ImportError:
        notes.append("scikit-image not installed: its sample images are left out")
    else:
        for name in ("astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard",
                     "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
                     "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page",
                     "retina", "rocket", "shepp_logan_phantom", "text"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    array = np.asarray(getattr(skimage.data, name)())
            except Exception as exc:  # some need a download: not available offline
                notes.append(f"skimage.data.{name}: {type(exc).__name__}")
                continue
            if array.dtype == bool:
                array = array.astype(np.uint8) * 255
            elif array.dtype.kind == "f":
                array = (np.clip(array / max(float(array.max()), 1e-9), 0, 1) * 255).astype(np.uint8)
            samples.append((f"skimage {name}", array[..., :3] if array.ndim == 3 else array))
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        notes.append("scikit-learn not installed: its sample images are left out")
    else:
        bunch = load_sample_images()
        for filename, array in zip(bunch.filenames, bunch.images, strict=True):
            samples.append((f"sklearn {Path(filename).name}", np.asarray(array)))
    return samples, notes


def _altered(images: Sequence[tuple[str, str, np.ndarray]], seed: int = 0
             ) -> Iterable[tuple[str, np.ndarray]]:
    """Real chest X-rays as another unit might take them: rotated up to 8 degrees,
    cropped to 85-95 %, brighter or darker (gamma 0.7 or 1.5), JPEG quality 60."""
    import io

    rng = np.random.default_rng(seed)
    for name, _, pixels in images:
        image = Image.fromarray(pixels)
        yield f"{name} rotated", np.asarray(image.rotate(float(rng.uniform(-8, 8)),
                                                         resample=Image.Resampling.BILINEAR))
        keep = float(rng.uniform(0.85, 0.95))
        width, height = image.size
        box = (int(width * (1 - keep) / 2), int(height * (1 - keep) / 2),
               int(width * (1 + keep) / 2), int(height * (1 + keep) / 2))
        yield f"{name} cropped", np.asarray(image.crop(box))
        gamma = 0.7 if rng.random() < 0.5 else 1.5
        yield f"{name} gamma {gamma}", (255 * (pixels / 255.0) ** gamma).astype(np.uint8)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=60)
        yield f"{name} JPEG", np.asarray(Image.open(buffer))


def _through_loader(array: np.ndarray, folder: Path, name: str) -> tuple[np.ndarray, bool] | str:
    """Save as PNG and read back with load_image: (pixels, colour), or the refusal."""
    from edge_agent.imaging import load_image
    from shared.errors import InputImageError

    path = folder / (name.replace(" ", "_").replace("/", "_") + ".png")
    Image.fromarray(array).save(path)
    try:
        image = load_image(path)
    except InputImageError as exc:
        return f"refused by load_image: {exc}"
    return image.pixels, image.source_was_colour


@dataclass
class _Tally:
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


def report(data: Path) -> dict[str, _Tally]:
    """False rejects on the real chest X-rays, detections on everything else."""
    import tempfile

    from edge_agent.imaging import load_image

    tallies: dict[str, _Tally] = {}
    nih = _nih_images(data)
    tally = tallies.setdefault("real: NIH ChestX-ray14 sample (shipped parameters, in-sample)", _Tally())
    for name, _, pixels in nih:
        tally.add(name, check_chest_radiograph(pixels), expect_ok=True)
    # Out of sample: fit on one half of the patients, test on the other, and the other way round.
    held_out = tallies.setdefault("real: NIH, held out (2-fold by patient, refitted)", _Tally())
    for part in (0, 1):
        fold = fit(pixels for _, patient, pixels in nih if int(patient) % 2 == part)
        for name, patient, pixels in nih:
            if int(patient) % 2 != part:
                held_out.add(name, check_chest_radiograph(pixels, parameters=fold), expect_ok=True)
    fullres = tallies.setdefault("real: NIH at full resolution (1024 px)", _Tally())
    for path in sorted((data / "nih-cxr14-sample" / "fullres").glob("*.png")):
        fullres.add(path.name, check_chest_radiograph(load_image(path).pixels), expect_ok=True)
    changed = tallies.setdefault("real: NIH, every 7th, altered (rotated, cropped, gamma, JPEG)", _Tally())
    for name, version in _altered(nih[::7]):
        changed.add(name, check_chest_radiograph(version), expect_ok=True)
    dicoms = tallies.setdefault("real: SIIM DICOM, MONOCHROME2", _Tally())
    dicoms.add("siim-cxr-monochrome2.dcm", check_chest_radiograph(
        load_image(data / "dicom" / "siim-cxr-monochrome2.dcm").pixels), expect_ok=True)
    negative = tallies.setdefault("real: SIIM DICOM, MONOCHROME1 label on MONOCHROME2 pixels", _Tally())
    negative.add("siim-cxr-monochrome1.dcm", check_chest_radiograph(
        load_image(data / "dicom" / "siim-cxr-monochrome1.dcm").pixels), expect_ok=False)

    samples, notes = _library_samples()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        for name, array in samples:
            grey = array if array.ndim == 2 else np.asarray(Image.fromarray(array).convert("L"))
            for group, version in (("grey", grey), ("grey, inverted", 255 - grey)):
                loaded = _through_loader(version, folder, f"{name} {group}")
                tallies.setdefault(f"other: library samples, {group}", _Tally()).add(
                    name, loaded if isinstance(loaded, str) else check_chest_radiograph(loaded[0]),
                    expect_ok=False)
            if array.ndim == 3:
                loaded = _through_loader(array, folder, f"{name} colour")
                tallies.setdefault("other: library samples, colour", _Tally()).add(
                    name, loaded if isinstance(loaded, str) else check_chest_radiograph(
                        loaded[0], source_was_colour=loaded[1]), expect_ok=False)
        for name, array in synthetic_non_cxrs():
            tallies.setdefault("other: synthetic", _Tally()).add(name, check_chest_radiograph(array),
                                                                 expect_ok=False)
    for note in notes:
        logger.info(note)
    return tallies


def _replace_parameters(source: str) -> None:
    path = Path(__file__)
    text = path.read_text(encoding="utf-8")
    start = text.index("# BEGIN FITTED PARAMETERS\n") + len("# BEGIN FITTED PARAMETERS\n")
    end = text.index("# END FITTED PARAMETERS")
    path.write_text(text[:start] + source + text[end:], encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``--report``: measure the guard; ``--fit``: refit it (``--write`` updates this file)."""
    import argparse

    from rich.console import Console
    from rich.table import Table

    from shared.datapaths import ENV_VAR, data_dir

    parser = argparse.ArgumentParser(prog="python -m edge_agent.ood", description=main.__doc__)
    parser.add_argument("--report", action="store_true", help="false rejects and detections")
    parser.add_argument("--fit", action="store_true", help="fit on the NIH sample and print the parameters")
    parser.add_argument("--write", action="store_true", help="with --fit: write them into edge_agent/ood.py")
    parser.add_argument("--data", type=Path, default=None, help=f"data folder (default: ${ENV_VAR})")
    arguments = parser.parse_args(argv)
    console = Console()
    data = arguments.data or data_dir()
    if data is None or not (data / "nih-cxr14-sample").is_dir():
        console.print(f"[red]no data folder: set {ENV_VAR} or pass --data[/red]")
        return 2
    if arguments.fit:
        source = parameters_source(fit(pixels for _, _, pixels in _nih_images(data)))
        if arguments.write:
            _replace_parameters(source)
            console.print(f"written into {Path(__file__).name}")
        else:
            console.print(source, markup=False, highlight=False)
    if arguments.report or not arguments.fit:
        table = Table(title="Out-of-distribution guard")
        for column in ("images", "count", "flagged not a CXR", "rate", "refused by load_image"):
            table.add_column(column)
        tallies = report(data)
        for group, tally in tallies.items():
            rate = tally.flagged / tally.total if tally.total else 0.0
            table.add_row(group, str(tally.total), str(tally.flagged), f"{rate:.1%}", str(tally.loader))
        console.print(table)
        for group, tally in tallies.items():
            for example in tally.examples:
                console.print(f"wrong answer, {group}: {example}", markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
