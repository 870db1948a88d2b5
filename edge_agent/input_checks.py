"""Checks on an input file that :mod:`edge_agent.imaging` makes while reading it.

* DICOM Body Part Examined and Modality: a skull film or a CT slice sent to
  the ambulance's receiver is refused before anything looks at its pixels.
* A baseline JPEG cut short: Pillow (libjpeg) decodes what is there and fills
  the rest with flat mid-grey without an error, so the half picture would
  otherwise be judged "not a chest radiograph" or, worse, diagnosed.
* Exception texts that name an in-memory buffer (``<_io.BytesIO object at
  0x7f...>``) name the file instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from shared.errors import CorruptImageError, NotChestRadiographError

logger = logging.getLogger(__name__)

CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "LUNGS", "HEART", "RIBS")
"""Body Part Examined values (DICOM PS3.16 Annex L terms and common vendor ones) of a chest film.
A value that contains CHEST or THORAX (``CHEST_PA``, ``PORT CHEST``) counts too."""
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR")
"""Modality values of a projection radiograph (DR is not a DICOM term but units use it)."""
EXPORT_MODALITIES = ("OT",)
"""``Other``: what exported Secondary Captures of a radiograph often carry; read, with a warning."""
FILL_GREY = 128
"""What libjpeg decodes where a baseline JPEG's data ran out (zero coefficients)."""
MIN_FILL_ROWS = 8
"""One row of 8 x 8 blocks: less could be a real grey band."""

_BUFFER = re.compile(r"<_io\.\w+ object at 0x[0-9a-fA-F]+>")


def check_body_part_and_modality(dataset: Any, name: str) -> None:
    """Refuse a DICOM object whose header says it is not a chest radiograph.

    Absent or empty values are accepted (many units leave Body Part Examined empty).

    Raises:
        NotChestRadiographError: another body part, or a modality that is not a radiograph.
    """
    modality = _text(dataset.get("Modality"))
    if modality and modality not in RADIOGRAPH_MODALITIES:
        if modality in EXPORT_MODALITIES:
            logger.warning("DICOM modality OT (other), read as a radiograph", extra={"image": name})
        else:
            raise NotChestRadiographError(
                f"{name}: Modality {modality!r} is not a radiograph (CR, DX or DR); the model reads "
                f"chest X-rays only"[:300])
    part = _text(dataset.get("BodyPartExamined"))
    if part and not (part in CHEST_BODY_PARTS or "CHEST" in part or "THORAX" in part):
        raise NotChestRadiographError(
            f"{name}: Body Part Examined {part!r} is not the chest; the model reads chest X-rays only"[:300])


def _text(value: Any) -> str:
    return " ".join(str(value).upper().split()) if value is not None else ""


def check_jpeg_complete(pixels: np.ndarray, name: str) -> None:
    """Refuse a decoded baseline JPEG whose last rows are libjpeg's flat fill.

    Raises:
        CorruptImageError: the bottom rows (at least one block row) are all :data:`FILL_GREY`.
    """
    rows = 0
    for row in pixels[::-1]:
        if row.min() != FILL_GREY or row.max() != FILL_GREY:
            break
        rows += 1
    if rows >= MIN_FILL_ROWS and rows < pixels.shape[0]:
        raise CorruptImageError(f"{name}: JPEG data ends early: the bottom {rows} of {pixels.shape[0]} rows "
                                f"are blank fill (the file is truncated or was cut short while copying)")


def scrub(text: str, name: str) -> str:
    """``text`` with in-memory buffer reprs replaced by the file's name."""
    return _BUFFER.sub(name, text)
