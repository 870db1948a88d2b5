"""NIH ChestX-ray14 in its published layout: an image folder and a
``Data_Entry`` CSV (v2020 labels, ``|``-separated findings, ``No Finding``).

Works for the 1,335-image sample in the team's data folder and for the full
112,120-image set alike: rows whose image file is absent are dropped with a
count in the log, so a partial download still trains.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from shared.errors import ConfigurationError
from shared.findings import FINDINGS, NO_FINDING
from shared.synthetic import FILE_PREFIX, read_mark

logger = logging.getLogger(__name__)

SAMPLE_SUBDIR = "nih-cxr14-sample"
TEACHER_FILE = "reference-densenet121-predictions.csv"


@dataclass
class NihDataset:
    """Image names, patients, multi-hot labels and sources, row-aligned."""

    image_dir: Path
    names: list[str]
    patients: np.ndarray
    labels: np.ndarray
    """(n, 14) uint8 in canonical finding order."""
    sources: list[str]
    views: list[str]
    teacher: np.ndarray | None = None
    """(n, 14) float32 teacher probabilities, NaN where the teacher has none."""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: np.ndarray) -> NihDataset:
        """Rows ``index`` as a new dataset."""
        return NihDataset(
            image_dir=self.image_dir, names=[self.names[i] for i in index],
            patients=self.patients[index], labels=self.labels[index],
            sources=[self.sources[i] for i in index], views=[self.views[i] for i in index],
            teacher=None if self.teacher is None else self.teacher[index])


def parse_labels(text: str) -> np.ndarray:
    """``Effusion|Mass`` -> 14-long multi-hot vector; unknown names are an error."""
    vector = np.zeros(len(FINDINGS), dtype=np.uint8)
    index = {str(f): i for i, f in enumerate(FINDINGS)}
    for name in text.split("|"):
        name = name.strip()
        if not name or name == NO_FINDING:
            continue
        if name not in index:
            raise ConfigurationError(f"unknown finding {name!r} in label file")
        vector[index[name]] = 1
    return vector


def _open_csv(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    return path.open(encoding="utf-8", newline="")


def load_nih(labels_csv: Path, image_dir: Path, teacher_csv: Path | None = None) -> NihDataset:
    """Read a ``Data_Entry``-style CSV and keep rows whose image exists.

    Raises:
        ConfigurationError: the CSV or image folder is missing, or no image matches.
    """
    if not labels_csv.is_file():
        raise ConfigurationError(f"label file {labels_csv} not found")
    if not image_dir.is_dir():
        raise ConfigurationError(f"image folder {image_dir} not found")
    present = {p.name for p in image_dir.iterdir()}
    names, patients, labels, sources, views = [], [], [], [], []
    missing = 0
    with _open_csv(labels_csv) as handle:
        for row in csv.DictReader(handle):
            name = row["Image Index"]
            if name.startswith(FILE_PREFIX):
                raise ConfigurationError(f"{labels_csv} lists synthetic image {name}; real-data label "
                                         "files never hold synthetic images (they only train, via "
                                         "train ablation / synthesize)")
            if name not in present:
                missing += 1
                continue
            names.append(name)
            patients.append(int(row["Patient ID"]))
            labels.append(parse_labels(row["Finding Labels"]))
            sources.append(row.get("source_repo") or "")
            views.append(row.get("View Position") or "")
    if not names:
        raise ConfigurationError(f"none of the images in {labels_csv} are in {image_dir}")
    if missing:
        logger.info("label rows without an image skipped", extra={"count": missing})
    dataset = NihDataset(image_dir=image_dir, names=names, patients=np.array(patients),
                         labels=np.stack(labels), sources=sources, views=views)
    if teacher_csv is not None:
        dataset.teacher = load_teacher(teacher_csv, names)
    return dataset


def load_sample(data_root: Path, *, with_teacher: bool = True) -> NihDataset:
    """The sample in the team's data folder (``nih-cxr14-sample``)."""
    root = data_root / SAMPLE_SUBDIR
    teacher = root / TEACHER_FILE
    return load_nih(root / "labels.csv", root / "images",
                    teacher if with_teacher and teacher.is_file() else None)


def load_teacher(path: Path, names: list[str]) -> np.ndarray:
    """A teacher's probabilities (columns ``prob_<Finding>``) aligned to ``names``;
    NaN rows for images the teacher did not score."""
    out = np.full((len(names), len(FINDINGS)), np.nan, dtype=np.float32)
    position = {name: i for i, name in enumerate(names)}
    with _open_csv(path) as handle:
        reader = csv.DictReader(handle)
        columns = [f"prob_{f}" for f in FINDINGS]
        absent = [c for c in columns if c not in (reader.fieldnames or [])]
        if absent:
            raise ConfigurationError(f"teacher file {path} lacks columns {absent}")
        for row in reader:
            i = position.get(row["Image Index"])
            if i is not None:
                out[i] = [float(row[c]) for c in columns]
    return out


def read_grey(path: Path, size: int) -> np.ndarray:
    """An image file as an 8-bit grey ``size`` x ``size`` array (whole image resized).

    Raises:
        ConfigurationError: the file carries goldenhour's synthetic mark; real-data
            loaders (which feed every evaluation) never read a generated image.
    """
    with Image.open(path) as image:
        if read_mark(image.info) is not None:
            raise ConfigurationError(f"{path.name} is a synthetic image in a real-data folder; "
                                     "synthetic images only enter training through a synthetic set")
        grey = image.convert("L") if image.mode not in ("I;16", "I") else _16_to_8(image)
        return np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _16_to_8(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(array, (0.5, 99.5))
    scaled = np.clip((array - low) / max(high - low, 1.0) * 255.0, 0, 255)
    return Image.fromarray(scaled.astype(np.uint8))


def load_pixels(dataset: NihDataset, size: int) -> np.ndarray:
    """All images as one (n, size, size) uint8 array."""
    return np.stack([read_grey(dataset.image_dir / name, size) for name in dataset.names])
