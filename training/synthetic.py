"""Synthetic image sets: writing them marked, reading them back for training
only, and the guard that keeps them out of every evaluation.

Every file is a PNG whose name starts with ``synthetic-`` and whose text chunk
carries :data:`shared.synthetic.MARK_KEY`; the folder's ``synthetic.json``
lists every file with its labels and sha256 and says ``"synthetic": true``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from shared.synthetic import FILE_PREFIX, MARK_KEY, mark_text, read_mark

MANIFEST = "synthetic.json"


class SyntheticDataError(ConfigurationError):
    """A synthetic image where only real ones may go (an evaluation set, a real-data
    folder), or a synthetic set whose files do not match its manifest."""


@dataclass
class SyntheticSet:
    """Synthetic images for training: pixels, labels and file names, row-aligned."""

    pixels: np.ndarray
    labels: np.ndarray
    names: list[str]
    generator: dict[str, object]


def label_names(vector: np.ndarray) -> list[str]:
    return [str(FINDINGS[i]) for i in np.flatnonzero(vector)]


def write_set(out: Path, images: np.ndarray, labels: np.ndarray, *, generator: dict[str, object],
              stem: str, seed: int, command: str) -> Path:
    """Write (n, r, r) uint8 ``images`` with (n, 14) ``labels`` as marked PNGs and the
    manifest (appending to an existing one in ``out``); returns the manifest path."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {
        "synthetic": True, "not_for_clinical_use": True,
        "warning": "GAN-generated images: not patients, never for evaluation or clinical display.",
        "files": []}
    manifest.setdefault("batches", []).append({"generator": generator, "command": command, "seed": seed})
    taken = {entry["file"] for entry in manifest["files"]}
    index = 0
    for image, vector in zip(images, labels, strict=True):
        while (name := f"{FILE_PREFIX}{stem}-{index:05d}.png") in taken:
            index += 1
        taken.add(name)
        names = label_names(vector)
        info = PngImagePlugin.PngInfo()
        info.add_text(MARK_KEY, mark_text(str(generator.get("name", "pggan")),
                                          str(generator.get("checkpoint_sha256", "")), names, seed))
        Image.fromarray(image).save(out / name, pnginfo=info)
        manifest["files"].append({"file": name, "labels": names, "synthetic": True,
                                  "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()})
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(manifest_path)
    return manifest_path


def is_synthetic(path: Path) -> bool:
    """True for a file that carries the synthetic mark or the synthetic name prefix."""
    if path.name.startswith(FILE_PREFIX):
        return True
    try:
        with Image.open(path) as image:
            return read_mark(image.info) is not None
    except OSError:
        return False


def load_set(folder: Path) -> SyntheticSet:
    """A synthetic set for training; every file must be marked and match its sha256.

    Raises:
        SyntheticDataError: no manifest, an unmarked or altered file.
    """
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise SyntheticDataError(f"{folder} has no {MANIFEST}: not a synthetic set")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("synthetic") is not True:
        raise SyntheticDataError(f"{manifest_path} does not say synthetic: true")
    pixels, labels, names = [], [], []
    index = {str(f): i for i, f in enumerate(FINDINGS)}
    for entry in manifest["files"]:
        path = folder / entry["file"]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SyntheticDataError(f"{path} does not match its sha256 in {MANIFEST}")
        with Image.open(path) as image:
            if read_mark(image.info) is None:
                raise SyntheticDataError(f"{path} lacks the synthetic mark")
            pixels.append(np.asarray(image.convert("L")))
        vector = np.zeros(len(FINDINGS), dtype=np.uint8)
        vector[[index[n] for n in entry["labels"]]] = 1
        labels.append(vector)
        names.append(entry["file"])
    generator = manifest["batches"][-1]["generator"] if manifest.get("batches") else {}
    return SyntheticSet(np.stack(pixels), np.stack(labels), names, generator)


def assert_real(names: Sequence[str], synthetic: np.ndarray | None = None) -> None:
    """Refuse an evaluation set that holds a synthetic image, by name or by flag.

    Raises:
        SyntheticDataError: naming the first offending images.
    """
    named = [n for n in names if Path(n).name.startswith(FILE_PREFIX)]
    flagged = [] if synthetic is None else [names[i] for i in np.flatnonzero(synthetic)]
    bad = sorted(set(named) | set(flagged))
    if bad:
        raise SyntheticDataError(f"{len(bad)} synthetic image(s) in an evaluation set, e.g. {bad[:3]}; "
                                 "synthetic images may only train")
