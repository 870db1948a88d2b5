"""The manifest's command names every step whose result the entry ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from training.export import command_chain  # noqa: E402


def test_the_command_chain_names_each_step_the_entry_ships(tmp_path: Path) -> None:
    assert command_chain(tmp_path, "train", "export") == "train && export"
    (tmp_path / "operating_points.json").write_text(json.dumps({"command": "points"}))
    (tmp_path / "region_sources.json").write_text(json.dumps({"sources": {}, "command": "regions"}))
    assert command_chain(tmp_path, "train", "export") == "train && points && regions && export"
    # results written before the steps recorded their command add nothing
    (tmp_path / "region_sources.json").write_text(json.dumps({"sources": {}}))
    assert command_chain(tmp_path, "train", "export") == "train && points && export"
    # recalibrate keeps the old entry's region sources, so it names only the points' step
    (tmp_path / "region_sources.json").write_text(json.dumps({"sources": {}, "command": "regions"}))
    assert command_chain(tmp_path, "train", "export", shipped=("operating_points.json",)) == \
        "train && points && export"


def test_results_already_read_give_the_same_chain_as_the_files(tmp_path: Path) -> None:
    from training.export import step_result
    from training.region_sources import FILE as REGIONS
    from training.run_operating_points import FILE as POINTS

    (tmp_path / POINTS).write_text(json.dumps({"command": "points"}))
    (tmp_path / REGIONS).write_text(json.dumps({"sources": {}, "command": "regions"}))
    read = [step_result(tmp_path, POINTS), step_result(tmp_path, REGIONS)]
    assert command_chain(tmp_path, "train", "export", results=read) == \
        command_chain(tmp_path, "train", "export") == "train && points && regions && export"
    assert step_result(tmp_path, "absent.json") is None
