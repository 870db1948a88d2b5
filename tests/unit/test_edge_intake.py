"""The edge's image intake tally: how refusals are classed, counts kept across
restarts, a damaged file kept aside, the message it becomes, and the hub's rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.intake import IntakeTally, refusal_outcome
from hospital_hub.field_stats import wilson
from hospital_hub.intake import intake_figures
from shared.errors import (
    BlankImageError,
    CorruptImageError,
    InputImageError,
    NotChestRadiographError,
    NotFrontalViewError,
    SyntheticImageError,
)
from shared.messages import Envelope, IntakeV1, decode, encode


@pytest.mark.parametrize(("error", "outcome"), [
    (NotChestRadiographError("a photo"), "refused_not_chest"),
    (NotFrontalViewError("lateral"), "refused_not_chest"),
    (CorruptImageError("truncated"), "refused_unreadable"),
    (BlankImageError("flat"), "refused_unreadable"),
    (SyntheticImageError("GAN"), "refused_unreadable"),
    (InputImageError("cannot read"), "refused_unreadable"),
])
def test_refusals_are_classed_as_not_chest_or_unusable(error: InputImageError, outcome: str) -> None:
    assert refusal_outcome(error) == outcome


def test_counts_survive_a_restart_and_become_a_message(tmp_path: Path) -> None:
    path = tmp_path / "state" / "intake-amb-1.json"
    tally = IntakeTally(path)
    tally.count("chest", "1.0", "diagnosed")
    tally.count("chest", "1.0", "refused_not_chest")
    tally.count("chest", "1.0", "refused_not_chest")
    tally.count("chest", "2.0", "refused_unreadable")
    assert tally.changes == 4
    reopened = IntakeTally(path)
    assert reopened.changes == 0
    snapshot = reopened.snapshot()
    assert snapshot.since == tally.snapshot().since
    rows = {(m.model_name, m.model_version): (m.diagnosed, m.refused_not_chest, m.refused_unreadable)
            for m in snapshot.models}
    assert rows == {("chest", "1.0"): (1, 2, 0), ("chest", "2.0"): (0, 0, 1)}
    back = decode(encode(Envelope.wrap(snapshot, sender="amb-1")), expected=IntakeV1).payload
    assert back == snapshot


def test_a_damaged_tally_is_kept_aside_and_counting_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "intake.json"
    path.write_text('{"since": "yesterday", "models": {}}')
    tally = IntakeTally(path)
    assert tally.snapshot().models == []
    kept = list(tmp_path.glob("intake.json.bad-*"))
    assert len(kept) == 1 and "yesterday" in kept[0].read_text()
    tally.count("m", "1", "diagnosed")
    assert IntakeTally(path).snapshot().models[0].diagnosed == 1


def test_only_the_most_recently_used_models_are_kept(tmp_path: Path) -> None:
    tally = IntakeTally(tmp_path / "intake.json", max_models=2)
    for version in ("1", "2", "3"):
        tally.count("m", version, "diagnosed")
    tally.count("m", "2", "diagnosed")
    tally.count("m", "4", "diagnosed")
    assert [(m.model_version, m.diagnosed) for m in tally.snapshot().models] == [("2", 2), ("4", 1)]


def test_the_refusal_rate_leaves_unusable_files_out() -> None:
    figures = intake_figures(diagnosed=18, not_chest=2, unreadable=5)
    assert figures["rate"]["successes"] == 2 and figures["rate"]["total"] == 20
    assert figures["rate"]["value"] == pytest.approx(0.1)
    assert figures["rate"]["ci95"] == pytest.approx(wilson(2, 20))
    assert intake_figures(0, 0, 3)["rate"]["value"] is None
