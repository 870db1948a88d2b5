"""Which regions a diagnosis carries: per finding, those of the source that
localised it better out of fold (the manifest's ``region_sources``)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.findings import Finding
from shared.messages import Region


def select_regions(regions: list[Region], sources: Mapping[Finding, str] | None) -> list[Region]:
    """The regions whose source is the one chosen for their finding (all when ``sources``
    is None; the heat map for a finding it does not name)."""
    if sources is None:
        return regions
    return [r for r in regions if r.source == sources.get(r.finding, "heatmap")]
