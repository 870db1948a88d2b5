"""Regions come from the source chosen for each finding."""

from __future__ import annotations

import pytest

from edge_agent.regions import select_regions
from shared.findings import FINDINGS, Finding
from shared.manifest import InputContract, ModelEntry
from shared.messages import Region


def _region(finding: Finding, source: str) -> Region:
    return Region(finding=finding, x1=0.1, y1=0.1, x2=0.5, y2=0.5, score=0.6, source=source)  # type: ignore[arg-type]


def test_each_finding_keeps_only_its_chosen_source() -> None:
    regions = [_region(Finding.CARDIOMEGALY, "detector"), _region(Finding.CARDIOMEGALY, "heatmap"),
               _region(Finding.EFFUSION, "detector"), _region(Finding.EFFUSION, "heatmap")]
    chosen = select_regions(regions, {Finding.CARDIOMEGALY: "detector", Finding.EFFUSION: "heatmap"})
    assert [(r.finding, r.source) for r in chosen] == [(Finding.CARDIOMEGALY, "detector"),
                                                        (Finding.EFFUSION, "heatmap")]
    # a finding the manifest does not name keeps its heat-map region; no choice keeps everything
    assert select_regions(regions, {}) == [regions[1], regions[3]]
    assert select_regions(regions, None) == regions


def test_manifest_refuses_region_sources_for_unknown_labels() -> None:
    fields = dict(name="mm", version="1", task="classifier", labels=[str(f) for f in FINDINGS],
                  input=InputContract(size=64), files=[], outputs={"logits": "x"}, command="goldenhour train",
                  data="test", created_at="2026-12-02")
    entry = ModelEntry.model_validate({**fields, "region_sources": {"Cardiomegaly": "detector"}})
    assert entry.region_sources == {"Cardiomegaly": "detector"}
    with pytest.raises(ValueError, match="region_sources"):
        ModelEntry.model_validate({**fields, "region_sources": {"Heart": "detector"}})
