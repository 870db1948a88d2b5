"""Is this chest film upright? A cheap check for turned and mirrored films.

A film turned by 90, 180 or 270 degrees, or mirrored, still looks like a
chest X-ray to the grey-level statistics of :mod:`edge_agent.ood`, but the
classifier would read it wrongly (issue 20: a film turned 90 degrees got
triage 2). Two linear checks on a small layout of the film, numpy and Pillow
only (no torch), about a millisecond:

* **turned**: an "uprightness" map scores the film under each of the eight
  ways a square picture can be turned and mirrored (the dihedral group); a
  turn that scores clearly better than the film as it is refuses it;
* **mirrored left-right**: the layout is almost symmetric, so a second check
  reads the left-minus-right differences (heart, aortic knob, gastric bubble).

Films are refused, never straightened. The parameters were fitted on the
patients of one half of the NIH sample and measured on the other half
(``goldenhour edge guard-report``, docs/image-guard.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = 24
"""Side of the layout the uprightness map reads."""
MIRROR_SIZE = 12
"""Side of the layouts whose left-right differences the mirror check reads."""

TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "upright": lambda a: a,
    "rotated 90 degrees counter-clockwise": lambda a: np.rot90(a, 1),
    "upside down (rotated 180 degrees)": lambda a: np.rot90(a, 2),
    "rotated 90 degrees clockwise": lambda a: np.rot90(a, 3),
    "mirrored left-right": lambda a: a[:, ::-1],
    "mirrored top-bottom": lambda a: a[::-1, :],
    "transposed (turned 90 degrees and mirrored)": lambda a: a.T,
    "anti-transposed (turned 90 degrees and mirrored)": lambda a: np.rot90(a, 2).T,
}
"""Each name says what was done to an upright film to give the picture."""
NAMES: tuple[str, ...] = tuple(TRANSFORMS)
_UNDO = {1: 3, 3: 1}
"""Index of the transform that undoes each one (all others undo themselves)."""
_TURNED = [1, 2, 3, 5, 6, 7]
"""Every hypothesis but upright and mirrored left-right (the mirror check decides those two)."""


@dataclass(frozen=True)
class OrientationResult:
    """The verdict: ``ok`` unless the film looks turned or mirrored, by a margin."""

    ok: bool
    looks: str
    """What seems to have been done to an upright film (``upright`` when ok)."""
    turned: float
    """Best turned hypothesis's score minus the better of upright and mirrored."""
    mirrored: float
    """Evidence for a left-right mirror (negative: for upright)."""
    reason: str | None = None


@dataclass(frozen=True)
class OrientationParameters:
    """What :func:`check_orientation` was fitted to."""

    turn_weights: np.ndarray
    mirror_weights: np.ndarray
    turn_margin: float
    mirror_margin: float
    fitted_on: int


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(array, np.float32))
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), np.float32)


def _z(array: np.ndarray) -> np.ndarray:
    centred = array - array.mean()
    return centred / (float(centred.std()) + 1e-6)


def trim_frame(image: np.ndarray, flat: float = 0.02, most: float = 0.25) -> np.ndarray:
    """Cut uniform bands (black or white frames) off the edges, up to ``most`` of each side."""
    rows, cols = image.shape
    top, bottom, left, right = 0, rows, 0, cols
    while top < rows * most and image[top, left:right].std() < flat:
        top += 1
    while rows - bottom < rows * most and image[bottom - 1, left:right].std() < flat:
        bottom -= 1
    while left < cols * most and image[top:bottom, left].std() < flat:
        left += 1
    while cols - right < cols * most and image[top:bottom, right - 1].std() < flat:
        right -= 1
    return image[top:bottom, left:right]


def layout(pixels: np.ndarray) -> np.ndarray:
    """The film as a z-scored 48 x 48 layout, contrast-stretched, frames cut off."""
    small = _resize(np.asarray(pixels, np.float32), 128)
    low, high = np.percentile(small, [1, 99])
    small = np.clip((small - low) / max(float(high - low), 1e-6), 0, 1)
    return _z(_resize(trim_frame(small), 48))


def _turn_features(big: np.ndarray) -> np.ndarray:
    return _z(_resize(big, SIZE))


def _mirror_features(big: np.ndarray) -> np.ndarray:
    """Left minus mirrored right halves of the layout and of its edges (antisymmetric)."""
    gy, gx = np.gradient(big)
    half = MIRROR_SIZE // 2
    parts = []
    for plane in (big, np.hypot(gx, gy)):
        small = _z(_resize(plane, MIRROR_SIZE))
        parts.append((small[:, :half] - small[:, ::-1][:, :half]).ravel())
    return np.concatenate(parts)


def _turn_views(turn: np.ndarray) -> np.ndarray:
    """Row ``i``: the layout with ``NAMES[i]`` undone, flattened."""
    return np.stack([undo(name, turn).ravel() for name in NAMES])


def undo(looks: str, pixels: np.ndarray) -> np.ndarray:
    """The film with ``looks`` (a name in :data:`NAMES`) undone: upright again."""
    index = NAMES.index(looks)
    return TRANSFORMS[NAMES[_UNDO.get(index, index)]](pixels)


def check_orientation(pixels: np.ndarray, parameters: OrientationParameters | None = None
                      ) -> OrientationResult:
    """Refuse a film that looks turned or mirrored (see the module doc)."""
    parameters = parameters or DEFAULT_PARAMETERS
    big = layout(pixels)
    values = _turn_views(_turn_features(big)) @ parameters.turn_weights.ravel()
    turned = float(values[_TURNED].max() - max(values[0], values[4]))
    mirrored = float(-(_mirror_features(big) @ parameters.mirror_weights))
    looks = "upright"
    if turned > parameters.turn_margin:
        looks = NAMES[_TURNED[int(np.argmax(values[_TURNED]))]]
    elif mirrored > parameters.mirror_margin:
        looks = NAMES[4]
    if looks == "upright":
        return OrientationResult(ok=True, looks=looks, turned=round(turned, 3), mirrored=round(mirrored, 3))
    reason = (f"the film looks {looks}; send it upright (head at the top, the patient's left on the "
              f"right of the image) or check the unit's orientation setting; not diagnosed")
    return OrientationResult(ok=False, looks=looks, turned=round(turned, 3), mirrored=round(mirrored, 3),
                             reason=reason)


def _logistic(features: np.ndarray, targets: np.ndarray, *, l2: float, steps: int, rate: float
              ) -> np.ndarray:
    """Weights of a logistic regression without intercept (full-batch gradient descent)."""
    weights = np.zeros(features.shape[1])
    for _ in range(steps):
        probability = 1 / (1 + np.exp(-np.clip(features @ weights, -50, 50)))
        weights -= rate * (features.T @ (probability - targets) / len(features) + l2 * weights)
    return weights


def fit(films: Iterable[np.ndarray], *, false_refusals: float = 0.0025) -> OrientationParameters:
    """Fit both checks on upright films, with margins that refuse at most
    ``false_refusals`` of those same films each."""
    layouts = [layout(pixels) for pixels in films]
    if len(layouts) < 50:
        raise ValueError(f"fitting needs at least 50 upright films, got {len(layouts)}")
    # The uprightness map: softmax over each film's eight versions, the upright one the target.
    views = np.stack([_turn_views(_turn_features(big)) for big in layouts]).astype(np.float64)
    turn = np.zeros(views.shape[2])
    for _ in range(1500):
        logits = views @ turn
        logits -= logits.max(axis=1, keepdims=True)
        probability = np.exp(logits)
        probability /= probability.sum(axis=1, keepdims=True)
        probability[:, 0] -= 1.0
        turn -= 1.0 * (np.einsum("nk,nkd->d", probability, views) / len(views) + 1e-3 * turn)
    # The mirror check: upright films against their mirror images (features change sign).
    mirror_rows = np.stack([_mirror_features(big) for big in layouts]).astype(np.float64)
    mirror = _logistic(np.vstack([mirror_rows, -mirror_rows]),
                       np.r_[np.ones(len(layouts)), np.zeros(len(layouts))], l2=0.1, steps=1500, rate=0.5)
    provisional = OrientationParameters(turn.reshape(SIZE, SIZE).astype(np.float32),
                                        mirror.astype(np.float32), math.inf, math.inf, len(layouts))
    turned, mirrored = [], []
    for big in layouts:
        values = _turn_views(_turn_features(big)) @ provisional.turn_weights.ravel()
        turned.append(float(values[_TURNED].max() - max(values[0], values[4])))
        mirrored.append(float(-(_mirror_features(big) @ provisional.mirror_weights)))
    return OrientationParameters(provisional.turn_weights, provisional.mirror_weights,
                                 _margin(turned, false_refusals), _margin(mirrored, false_refusals),
                                 len(layouts))


def _margin(upright: Sequence[float], false_refusals: float) -> float:
    """The smallest margin above all but ``false_refusals`` of the upright films' values."""
    return round(float(np.quantile(np.asarray(upright, np.float64), 1 - false_refusals)) + 1e-3, 3)


def _rows(values: np.ndarray, per_line: int = 12) -> str:
    flat = [f"{float(v):.4f}" for v in np.asarray(values).ravel()]
    return "".join("    " + ", ".join(flat[i:i + per_line]) + ",\n" for i in range(0, len(flat), per_line))


def parameters_source(parameters: OrientationParameters, note: str) -> str:
    """Python source for the fitted block at the end of this module."""
    return (f"# {note}\n"
            f"DEFAULT_PARAMETERS = OrientationParameters(\n"
            f"    turn_weights=np.array((\n{_rows(parameters.turn_weights)}), np.float32)"
            f".reshape(SIZE, SIZE),\n"
            f"    mirror_weights=np.array((\n{_rows(parameters.mirror_weights)}), np.float32),\n"
            f"    turn_margin={parameters.turn_margin!r}, mirror_margin={parameters.mirror_margin!r}, "
            f"fitted_on={parameters.fitted_on},\n)\n")


# BEGIN FITTED PARAMETERS
# Fitted by `goldenhour edge guard-report --fit --write` on 639 NIH films (patients with sha256(id) even)
DEFAULT_PARAMETERS = OrientationParameters(
    turn_weights=np.array((
    -2.0795, -2.4536, -0.9811, 0.3036, 0.1077, -2.3824, -1.5933, 0.1394, -0.5198, 0.7995, -0.0004, 0.7593,
    0.1125, 0.5330, -1.1959, 0.9175, -0.2988, 0.4494, 0.5703, -2.5759, -1.9323, 0.0429, 1.4941, 0.8342,
    0.8650, 0.8076, 0.5094, -0.0959, 1.5088, -1.1113, 1.1353, 0.7614, 0.4893, -0.5510, -0.3770, 0.4103,
    -0.4061, 0.6543, 0.6201, 0.4392, 0.6838, -0.1133, 2.0201, -1.0473, 1.5328, 0.2066, 0.0937, -1.0436,
    0.3043, -0.1165, -0.9923, -0.0144, -0.1952, -0.8019, -0.2223, 0.6907, -1.4108, -0.6653, 0.1339, -0.2242,
    -0.0836, -0.2834, -0.0430, 0.9880, -1.3192, -0.1708, 0.6842, 0.3920, -0.2437, 1.0245, 0.2792, -1.2542,
    -0.4029, 1.6545, -1.1878, 0.8892, -0.2499, -0.1622, -0.2747, 0.8044, 1.6339, 1.4069, -0.6458, -1.7263,
    1.1441, 0.3506, -1.9715, -2.0673, -0.9673, 0.2658, 0.0774, 0.8955, -0.7890, 1.2006, -2.1370, 0.9156,
    -0.0615, 0.8877, 0.2797, -1.0328, 0.0160, 0.0025, -0.1375, -0.9691, 0.7422, 0.5388, -0.1791, -0.7361,
    1.1582, 0.8483, 0.1062, -0.9197, -0.1069, -0.6700, -0.4924, -0.0648, 0.9153, 0.3795, -1.5369, 0.6490,
    -0.1102, -0.3311, 0.1140, 0.3939, -0.3894, -0.7553, -0.2530, -0.9208, 0.6347, 2.0185, -0.0721, -0.6281,
    1.2760, 0.9970, -1.3231, -0.4124, 0.5675, -0.6963, 0.7749, 0.6753, 0.5208, 0.4003, -1.1595, 0.3817,
    -0.1884, 1.7747, -0.4142, 1.8039, 0.4939, 0.2763, 0.0008, 0.4178, 0.5676, 0.5796, 0.1811, 0.1296,
    0.4450, 0.7137, -0.1986, -1.1924, -1.9064, -0.9612, -0.2012, 0.1746, -1.1631, 0.2794, -2.8948, 0.0872,
    0.0240, -0.3040, 0.7671, -0.5953, -0.4380, -1.3145, -1.1161, 0.6241, -0.0036, -0.3491, 0.7581, -0.0510,
    0.6508, -0.5627, -0.3886, -0.8847, -1.4959, 1.1759, 0.5998, 1.3600, 0.7372, -1.0668, -0.5759, 0.1417,
    0.0588, -0.8780, 1.0576, 0.3384, -0.5362, 0.5073, -0.6551, 0.3856, -0.2732, -1.5086, -0.3347, -1.0103,
    1.5166, 0.5954, 1.2082, -0.1994, -0.9268, -0.0142, -1.2762, 0.6625, -0.4297, -0.8990, 0.9096, 0.2897,
    0.5328, -0.2076, -0.4994, 0.3229, 0.4566, 0.3672, -1.6024, 0.1378, -0.9589, 0.8258, 0.6239, -0.3102,
    0.6074, 0.0967, -0.6017, 0.5496, -0.1226, 1.2598, -0.8838, -0.4814, -0.4800, 1.0109, 1.0738, 0.0810,
    -1.0585, -0.3387, 0.3633, 0.4417, -0.7039, -0.3358, 0.3990, -0.5094, -0.3419, 1.1443, 1.0984, 0.9126,
    -1.0768, -0.8493, -1.2784, -0.2246, -0.0967, -0.9905, -0.1238, 0.4367, -0.6706, -0.4167, 0.9925, 0.8224,
    0.5510, 0.6204, -0.2988, 0.4772, -0.3171, -2.1239, -1.0848, -0.4731, -2.0740, -1.1735, 0.3083, 0.2916,
    -0.2485, 0.0720, 1.1267, 1.7613, 0.0161, 0.4862, 1.1126, -0.2461, -0.3444, 0.0317, -0.1262, -1.0343,
    0.5658, 0.1169, -0.7861, 0.4361, -1.4104, -0.3629, 1.2094, 0.0562, -0.5303, 0.1027, -1.6626, -0.4168,
    0.3738, 1.5206, -0.1314, 0.2511, -0.4334, -1.4866, -0.3579, 0.6801, -0.1322, 0.7575, -0.0618, -1.3711,
    -1.2054, -0.2552, -0.1955, 0.7913, -0.4355, -0.6095, 0.2048, 0.5873, -0.1093, -1.1912, -1.4518, -0.0683,
    -0.0058, 1.2027, 0.7757, 0.4903, -0.3860, -0.4925, -0.4085, -0.1579, -0.3893, -0.1899, 0.0093, 0.6493,
    -0.4862, 1.1046, -0.4988, 0.3788, -1.4801, -0.0294, 0.1912, -0.8249, 0.0424, 0.8075, -1.2029, -1.0244,
    0.8027, 1.0318, -1.0317, 0.9205, 1.4117, -0.3121, -0.8753, 0.6086, 0.3660, 0.4341, -0.9703, 0.4336,
    0.4628, 1.4139, 0.5474, -0.4512, 0.9452, 0.1959, -0.1249, 0.2285, -0.5592, -0.0031, -0.5832, -0.0809,
    0.1665, 0.5081, -0.2499, 1.0319, 0.9311, 0.6425, -1.1150, -1.2671, 1.1281, -0.4447, -1.5881, -0.9791,
    -1.0593, -1.1886, -0.5776, 0.3875, 0.0118, -0.9817, 1.2998, 0.9329, -0.6289, 0.2037, -0.1570, 0.9451,
    -0.7108, 0.3662, -0.0679, 0.8989, -0.0611, -0.5116, 0.7710, 0.0879, -0.0749, 0.9093, 0.9714, 0.8698,
    0.3613, -0.2117, -0.5207, -0.0587, 0.5193, 0.6387, 1.3144, 2.3205, -0.8367, -0.1542, 0.5369, 1.0042,
    -0.7031, -0.5524, 0.2366, 1.6132, -1.6797, -0.3540, -0.1736, -0.3435, 0.1639, 0.3813, 0.1856, 0.0555,
    1.1773, 1.0026, 0.3432, -0.1863, -1.0508, 0.7700, 0.2091, 0.9858, 0.0628, 0.0534, -0.3740, 0.6902,
    0.3939, 0.9267, 0.6725, 1.4029, 0.2929, 0.1999, -0.7897, 1.2272, -0.0723, -0.8433, -1.1075, -0.5137,
    0.0592, -0.9563, -0.2974, -0.8961, 0.8260, 0.4670, 0.1741, 0.6783, 0.4213, -0.6998, -0.6039, 0.5296,
    0.3417, 0.7952, 0.9512, -0.0482, -0.6240, -0.2109, -0.4393, -0.7772, 0.3896, 0.2715, 0.4601, 0.9805,
    0.8266, -1.7158, 0.4405, 0.1492, 0.7569, -0.6910, -0.9036, 1.8925, 0.6470, -0.5938, 0.3921, 0.4205,
    -0.2750, -0.2701, 0.5707, -0.7993, -2.1842, 0.1666, 0.1198, -0.7786, -0.2493, -0.1799, 0.4625, 0.3223,
    1.9782, -0.3608, 0.0487, -0.2900, -1.2020, -0.1858, 0.8552, 1.7302, 0.9929, 0.0897, 0.9138, 0.3683,
    0.2352, -0.3253, 0.1718, -0.8315, -1.1337, -0.1880, 0.2894, 0.3718, 0.2747, -0.0809, -1.1380, -0.2483,
    0.6469, 0.8548, 0.7226, 0.4817, -0.6732, 1.7160, -0.2815, -0.0131, 0.3727, 0.2137, -0.0992, -0.1644,
    -0.3891, -0.5860, -1.2833, -1.1585, -0.3349, 0.4056, -1.0292, 1.3572, -0.1827, -0.1025, -1.7560, 1.0379,
    -0.7667, -0.6106, 0.0026, 1.3463, 0.4598, 0.7003, -0.2976, 0.9030, 1.0694, 0.5767, 0.1618, -0.0164,
    0.4332, 0.0977, -0.7416, -1.2993, -0.7197, 1.1259, 0.1767, 0.3812, -1.3792, 0.1556, 0.0639, 2.0120,
), np.float32).reshape(SIZE, SIZE),
    mirror_weights=np.array((
    -0.1016, -0.0818, -0.0649, -0.0453, -0.0694, 0.0059, 0.0658, 0.0025, -0.0194, -0.0262, 0.0015, -0.0447,
    0.0607, 0.0338, 0.0100, 0.0522, 0.0839, -0.0775, 0.0450, 0.0505, -0.0250, 0.0625, 0.0563, -0.1082,
    0.0249, 0.0288, -0.0678, 0.0077, -0.0463, -0.1405, 0.0216, 0.0090, -0.1088, -0.0326, -0.1411, -0.0991,
    0.0423, -0.0136, -0.0644, -0.0304, -0.2313, -0.1212, 0.0545, -0.0187, 0.0431, -0.0543, -0.2547, -0.1054,
    0.0300, 0.0048, 0.1559, 0.1099, -0.0854, -0.0411, 0.0314, 0.0231, 0.1670, 0.1825, 0.0483, -0.0161,
    0.0057, 0.0491, 0.1390, 0.2148, 0.1033, 0.0270, 0.0327, 0.0993, 0.0999, 0.1477, 0.1020, 0.0260,
    -0.1109, -0.2405, -0.0617, -0.0648, -0.0463, -0.0474, 0.0391, -0.1868, 0.0323, 0.0936, -0.0231, -0.0114,
    0.1078, -0.0853, 0.0538, 0.0544, -0.0682, -0.2627, -0.0398, -0.1299, -0.0032, -0.0375, -0.1678, -0.2502,
    0.0174, -0.0080, -0.0245, -0.1450, -0.2201, -0.0666, 0.0350, 0.0391, -0.0246, -0.0959, 0.0823, 0.0154,
    -0.0220, 0.0336, -0.0996, -0.0735, 0.1776, 0.1734, -0.0051, 0.0059, -0.0169, -0.1282, 0.2571, 0.2334,
    -0.0581, -0.0014, -0.0767, -0.0486, 0.1294, 0.1043, 0.0484, -0.0562, -0.0218, -0.1069, -0.0046, 0.0623,
    -0.0703, -0.0240, -0.0014, -0.0876, -0.0205, 0.0073, -0.0118, -0.0449, -0.0404, -0.0274, -0.0308, -0.0183,
), np.float32),
    turn_margin=2.526, mirror_margin=2.105, fitted_on=639,
)
# END FITTED PARAMETERS
