"""The 14 NIH ChestX-ray14 findings in their one canonical order.

Every model output, threshold list and message uses this order; nothing may
rely on alphabetical order or on a model's own label list without checking it
against :data:`FINDINGS`.
"""

from __future__ import annotations

from enum import StrEnum


class Finding(StrEnum):
    """One of the 14 findings, spelled as in NIH's label file."""

    ATELECTASIS = "Atelectasis"
    CARDIOMEGALY = "Cardiomegaly"
    CONSOLIDATION = "Consolidation"
    EDEMA = "Edema"
    EFFUSION = "Effusion"
    EMPHYSEMA = "Emphysema"
    FIBROSIS = "Fibrosis"
    HERNIA = "Hernia"
    INFILTRATION = "Infiltration"
    MASS = "Mass"
    NODULE = "Nodule"
    PLEURAL_THICKENING = "Pleural_Thickening"
    PNEUMONIA = "Pneumonia"
    PNEUMOTHORAX = "Pneumothorax"


FINDINGS: tuple[Finding, ...] = tuple(Finding)
"""Canonical label order (alphabetical, as NIH lists them)."""

NO_FINDING = "No Finding"
