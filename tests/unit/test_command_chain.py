"""The manifest's command names every step whose result the entry ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from training.export import command_chain, step_result  # noqa: E402
from training.region_sources import FILE as REGIONS  # noqa: E402
from training.run_operating_points import FILE as POINTS  # noqa: E402


def _chain(run: Path, shipped: tuple[str, ...] = (POINTS, REGIONS)) -> str:
    return command_chain("train", "export", [step_result(run, name) for name in shipped])


def test_the_command_chain_names_each_step_the_entry_ships(tmp_path: Path) -> None:
    assert _chain(tmp_path) == "train && export"
    (tmp_path / POINTS).write_text(json.dumps({"command": "points"}))
    (tmp_path / REGIONS).write_text(json.dumps({"sources": {}, "command": "regions"}))
    assert _chain(tmp_path) == "train && points && regions && export"
    # results written before the steps recorded their command add nothing
    (tmp_path / REGIONS).write_text(json.dumps({"sources": {}}))
    assert _chain(tmp_path) == "train && points && export"
    # recalibrate keeps the old entry's region sources, so it names only the points' step
    (tmp_path / REGIONS).write_text(json.dumps({"sources": {}, "command": "regions"}))
    assert _chain(tmp_path, (POINTS,)) == "train && points && export"


def test_a_step_that_has_not_run_has_no_result(tmp_path: Path) -> None:
    assert step_result(tmp_path, "absent.json") is None
