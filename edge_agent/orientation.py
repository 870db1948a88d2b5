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

Films are refused, never straightened. The parameters are part of the
``chest-guard`` model in ``models/`` (:mod:`edge_agent.guard_model`), fitted by
``goldenhour train guard`` on the patients of one half of the NIH sample and
measured on the other half by ``goldenhour train orientation-report``
(docs/image-guard.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edge_agent.guard_model import GuardParameters, OrientationParameters, shipped_guard
from shared.manifest import ModelManifestError

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
TURNED = [1, 2, 3, 5, 6, 7]
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


def mirror_features(big: np.ndarray) -> np.ndarray:
    """Left minus mirrored right halves of the layout and of its edges (antisymmetric)."""
    gy, gx = np.gradient(big)
    half = MIRROR_SIZE // 2
    parts = []
    for plane in (big, np.hypot(gx, gy)):
        small = _z(_resize(plane, MIRROR_SIZE))
        parts.append((small[:, :half] - small[:, ::-1][:, :half]).ravel())
    return np.concatenate(parts)


def turn_views(big: np.ndarray) -> np.ndarray:
    """Row ``i``: the layout at :data:`SIZE`, z-scored, with ``NAMES[i]`` undone, flattened."""
    turn = _z(_resize(big, SIZE))
    return np.stack([undo(name, turn).ravel() for name in NAMES])


def evidence(big: np.ndarray, parameters: OrientationParameters) -> tuple[np.ndarray, float, float]:
    """(score of each of :data:`NAMES`, turned, mirrored) of a :func:`layout`: ``turned`` is the
    best turned hypothesis's score minus the better of upright and mirrored, ``mirrored``
    the evidence for a left-right mirror."""
    values = turn_views(big) @ parameters.turn_weights.ravel()
    turned = float(values[TURNED].max() - max(values[0], values[4]))
    return values, turned, float(-(mirror_features(big) @ parameters.mirror_weights))


def parameters_of(guard: GuardParameters) -> OrientationParameters:
    """The orientation check's parameters of ``guard``, once checked against the layout this edge reads.

    Raises:
        ModelManifestError: the guard was made for another layout size.
    """
    parameters = guard.orientation
    if parameters.turn_weights.shape != (SIZE, SIZE):
        raise ModelManifestError(f"{guard.key}'s orientation weights are "
                                 f"{parameters.turn_weights.shape}, this edge reads {SIZE} x {SIZE}")
    return parameters


def shipped_parameters() -> OrientationParameters:
    """The orientation check's parameters of the shipped guard model (read once per process).

    Raises:
        ModelManifestError: the guard model is missing, altered or made for another layout size.
    """
    return parameters_of(shipped_guard())


def undo(looks: str, pixels: np.ndarray) -> np.ndarray:
    """The film with ``looks`` (a name in :data:`NAMES`) undone: upright again."""
    index = NAMES.index(looks)
    return TRANSFORMS[NAMES[_UNDO.get(index, index)]](pixels)


def check_orientation(pixels: np.ndarray, parameters: OrientationParameters | None = None
                      ) -> OrientationResult:
    """Refuse a film that looks turned or mirrored (see the module doc); ``parameters``
    default to the shipped guard model's."""
    parameters = parameters or shipped_parameters()
    values, turned, mirrored = evidence(layout(pixels), parameters)
    looks = "upright"
    if turned > parameters.turn_margin:
        looks = NAMES[TURNED[int(np.argmax(values[TURNED]))]]
    elif mirrored > parameters.mirror_margin:
        looks = NAMES[4]
    if looks == "upright":
        return OrientationResult(ok=True, looks=looks, turned=round(turned, 3), mirrored=round(mirrored, 3))
    reason = (f"the film looks {looks}; send it upright (head at the top, the patient's left on the "
              f"right of the image) or check the unit's orientation setting; not diagnosed")
    return OrientationResult(ok=False, looks=looks, turned=round(turned, 3), mirrored=round(mirrored, 3),
                             reason=reason)
