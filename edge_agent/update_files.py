"""A model update's files on the edge: the staging folder, the models folder
the release moves into, and the edge's manifest (written atomically). The
updater holds its lock around the manifest; these functions take none."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from edge_agent.pipeline import DiagnosisPipeline
from shared.errors import ModelUpdateError
from shared.manifest import Manifest, ModelEntry, load_manifest, save_manifest

logger = logging.getLogger(__name__)

STAGING = ".staging"
"""Where a release's files wait under the models folder until they pass their checks."""


def check_writable(models_dir: Path) -> None:
    """Refuse at start-up a models folder the updater could never install into
    (e.g. the checkout's ``models/`` under a systemd unit's ``ProtectSystem=strict``).

    Raises:
        ModelUpdateError: the folder (or, when it does not exist yet, the
            nearest folder above it) is not writable.
    """
    existing = next((p for p in (models_dir, *models_dir.parents) if p.exists()), models_dir)
    if not os.access(existing, os.W_OK):
        raise ModelUpdateError(
            f"the models folder {models_dir} is not writable, so no update could be installed: "
            "set GOLDENHOUR_EDGE_MODELS_DIR to a writable copy of the models "
            "(see docs/model-updates.md)")


def is_installed(active: Manifest, entry: ModelEntry) -> bool:
    """Whether ``entry`` is in the manifest already.

    Raises:
        ModelUpdateError: the same name and version with other content.
    """
    same = [m for m in active.models if m.key == entry.key]
    if same and same[-1] != entry:
        raise ModelUpdateError(f"{entry.key} is installed with other content: a new release "
                               "needs a new version")
    return bool(same)


def move_into_place(models_dir: Path, entries: list[ModelEntry], staging: Path) -> None:
    """Move the staged files of ``entries`` to ``<models_dir>/<name>/<version>/``."""
    for entry in entries:
        target = models_dir / entry.name / entry.version
        if target.exists():  # not in the manifest (checked): a leftover of an earlier try
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / entry.name / entry.version, target)


def add_to_manifest(models_dir: Path, entries: list[ModelEntry]) -> None:
    """Add (or replace) ``entries`` in the manifest of ``models_dir``."""
    manifest = load_manifest(models_dir, missing_ok=True)
    for entry in entries:
        manifest = manifest.upsert(entry)
    save_manifest(manifest, models_dir)


def remove_models(models_dir: Path, keys: set[str]) -> None:
    """Take entries out of the manifest first, then delete their files."""
    manifest = load_manifest(models_dir, missing_ok=True)
    gone = [m for m in manifest.models if m.key in keys]
    save_manifest(manifest.model_copy(update={"models": [m for m in manifest.models
                                                         if m.key not in keys]}), models_dir)
    for entry in gone:
        shutil.rmtree(models_dir / entry.name / entry.version, ignore_errors=True)


def pipeline_keys(pipeline: DiagnosisPipeline) -> set[str]:
    """``name@version`` of the models ``pipeline`` runs."""
    info = pipeline.classifier.info
    keys = {f"{info.name}@{info.version}"}
    if pipeline.detector is not None:
        keys.add(pipeline.detector.entry.key)
    return keys
