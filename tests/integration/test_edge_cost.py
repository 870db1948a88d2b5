"""``train edge-cost`` exports and times candidate classifiers with the edge's
OpenVINO settings: the baseline's ratio is 1 and an ensemble carries both members'
weights. (Speed itself is a benchmark's figure, not a test's.)"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from training.edge_cost import measure  # noqa: E402


def test_candidates_are_timed_against_the_first() -> None:
    names = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite0+efficientnet-lite1"]
    costs = {c.candidate: c for c in measure(names, size=128, runs=5)}
    assert list(costs) == names and costs[names[0]].ratio == 1.0
    for cost in costs.values():
        assert 0 < cost.p50_ms <= cost.p95_ms
        assert cost.ratio == pytest.approx(cost.p50_ms / costs[names[0]].p50_ms)
    both = costs[names[0]].ir_mb + costs[names[1]].ir_mb
    assert costs[names[2]].ir_mb == pytest.approx(both, rel=0.05)
