"""``train recalibrate``: a shipped classifier's files under a new version whose
calibration, operating points and out-of-fold figures come from a complete
cross-validation of the same recipe.

The weights are not retrained: the files are moved byte for byte (same sha256)
and the new entry's command names both the command that made them and the
commands that made the new numbers. Used when a recipe's estimate grows from
some folds to all of them, as 1.1.0's did (2 of 5 folds) in model round 2.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import ConfigurationError
from shared.manifest import ModelEntry, describe_file, load_manifest, save_manifest
from training.export import ExportReport, _metrics, _operating_points, command_chain


def recalibrate(run: Path, models_dir: Path, name: str, from_version: str, version: str, command: str,
                *, replace: bool) -> ModelEntry:
    """Register ``name@version``: the files of ``from_version``, the run's calibration and
    operating points; with ``replace`` the old entry and folder go (git keeps them)."""
    manifest = load_manifest(models_dir)
    old = manifest.find(name, from_version)
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    points = _operating_points(run)
    if points is None:
        raise ConfigurationError(f"{run} has no operating points: run 'train operating-points' first")
    if summary["config"]["size"] != old.input.size:
        raise ConfigurationError(f"{run} was trained at {summary['config']['size']} px, "
                                 f"{old.key} takes {old.input.size} px")
    source, target = models_dir / name / from_version, models_dir / name / version
    target.mkdir(parents=True, exist_ok=True)
    files = []
    for file in old.files:
        path = target / Path(file.path).name
        (shutil.move if replace else shutil.copyfile)(models_dir / file.path, path)
        described = describe_file(models_dir, path, file.format, file.precision)
        if described.sha256 != file.sha256:
            raise ConfigurationError(f"{path} changed on the way: sha256 {described.sha256[:16]}...")
        files.append(described)
    report = ExportReport(**json.loads((source / "export.json").read_text(encoding="utf-8")))
    shutil.copyfile(source / "export.json", target / "export.json")
    kept = [m for m in old.metrics if m.name == "int8_mean_auc_change"]  # a property of the files
    calibration = summary["calibration"]
    entry = ModelEntry.model_validate({**old.model_dump(), **{
        "version": version, "files": files,
        "temperature": [round(t, 6) for t in calibration["temperature"]],
        "bias": [round(b, 6) for b in calibration["bias"]],
        "thresholds": [p["threshold"] for p in points["points"]], "threshold_rule": points["rule"],
        "operating_points": points["points"], "operating_points_data": points["data"],
        "reference_prevalence_source": points["reference_prevalence_source"],
        "reference_histogram": points["reference_histogram"],
        "metrics": [*_metrics(run, summary, ExportReport(**{**report.__dict__, "auc_int8": None}), points),
                    *kept],
        # the old entry's region sources stay, so only the operating points' step is named
        "command": command_chain(f"{old.command} && {summary['command']}", command, [points]),
        "data": f"{old.data}; calibration, operating points and out-of-fold figures: {points['data']}",
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat()}})
    updated = manifest.upsert(entry)
    if replace:
        updated = updated.model_copy(update={"models": [m for m in updated.models if m.key != old.key]})
        shutil.rmtree(source)
    save_manifest(updated, models_dir)
    from training.card import write_card

    epochs = _final_epochs(models_dir / name / "README.md")
    write_card(models_dir / name, entry, run, report,
               summary_overrides={"final_epochs": f"{epochs} (the weights of {old.key}, unchanged)"})
    return entry


def _final_epochs(card: Path) -> str:
    """The epochs the moved weights were trained for, as the old card says."""
    import re

    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    found = re.search(r"final fit on all\s+(\d+)\s+images for (\d+) epochs", text)
    return found.group(2) if found else "the median of its folds' best epochs"
