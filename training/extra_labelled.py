"""ER-labelled images exported by the hub (``goldenhour hub export-labelled``)
appended to the NIH training data (``train classify --extra-labelled DIR``).

An export folder has the NIH layout: ``labels.csv`` (``Data_Entry`` columns
plus the verdict's) and ``images/``. Its patient ids are the hub's
pseudonyms; each folder's are moved into a range of their own
(:data:`PATIENT_OFFSET` times the folder's position, counting from 1) so they
never meet an NIH patient id or another folder's, and the patient-wise folds
keep every image of one patient on one side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.errors import ConfigurationError
from training.data import NihDataset, load_nih

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"
PATIENT_OFFSET = 10**10
"""Larger than any NIH patient id and any hub pseudonym (below 10**9)."""
SOURCE = "hub-export"


def load_export(folder: Path, position: int) -> NihDataset:
    """One export folder as a dataset whose names are absolute paths and whose
    patient ids are offset by ``position * PATIENT_OFFSET``.

    Raises:
        ConfigurationError: not an export folder, or a pseudonym out of range.
    """
    if position < 1:
        raise ConfigurationError("export folders count from 1")
    dataset = load_nih(folder / LABELS_FILE, folder / IMAGES_DIR)
    if len(dataset.patients) and (dataset.patients.min() < 0
                                  or dataset.patients.max() >= PATIENT_OFFSET):
        raise ConfigurationError(f"{folder}: patient ids must be 0 .. {PATIENT_OFFSET - 1}")
    image_dir = (folder / IMAGES_DIR).resolve()
    return NihDataset(
        image_dir=image_dir, names=[str(image_dir / n) for n in dataset.names],
        patients=dataset.patients.astype(np.int64) + position * PATIENT_OFFSET,
        labels=dataset.labels, sources=[f"{SOURCE}:{folder.name}"] * len(dataset),
        views=dataset.views)


def append_exports(dataset: NihDataset, folders: Sequence[Path]) -> NihDataset:
    """``dataset`` with every export folder's images appended (none: unchanged).

    The appended rows' names are absolute paths (``image_dir / name`` is then
    the name itself); their teacher probabilities, if the dataset has a
    teacher, are NaN (no teacher scored them).
    """
    if not folders:
        return dataset
    parts = [load_export(folder, i) for i, folder in enumerate(folders, start=1)]
    overlap = set(dataset.patients.tolist()) & {p for part in parts for p in part.patients.tolist()}
    if overlap:
        raise ConfigurationError(f"patient ids shared with the base data: {sorted(overlap)[:5]}")
    teacher = dataset.teacher
    if teacher is not None:
        pad = np.full((sum(len(p) for p in parts), teacher.shape[1]), np.nan, dtype=teacher.dtype)
        teacher = np.concatenate([teacher, pad])
    merged = NihDataset(
        image_dir=dataset.image_dir,
        names=dataset.names + [n for p in parts for n in p.names],
        patients=np.concatenate([dataset.patients.astype(np.int64), *[p.patients for p in parts]]),
        labels=np.concatenate([dataset.labels, *[p.labels for p in parts]]),
        sources=dataset.sources + [s for p in parts for s in p.sources],
        views=dataset.views + [v for p in parts for v in p.views], teacher=teacher)
    logger.info("ER-labelled images appended", extra={
        "folders": [str(f) for f in folders], "images": sum(len(p) for p in parts),
        "patients": int(sum(len(np.unique(p.patients)) for p in parts))})
    return merged
