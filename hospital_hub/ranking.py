"""Ranking ERs for a case: pure and deterministic, no I/O.

The walking skeleton ranks by straight-line (great-circle) travel time only;
capabilities, capacity and routing come with the ranking issue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088
ROAD_FACTOR = 1.3
"""Roads are longer than the straight line; 1.3 is a common urban estimate."""
SPEED_KMH_BY_TRIAGE = {1: 50.0, 2: 45.0, 3: 40.0, 4: 35.0, 5: 35.0}
"""Average urban ambulance speed, faster with lights and siren for urgent cases."""


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS-84 points, in km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Site:
    """A candidate ER as ranking sees it."""

    id: str
    name: str
    lat: float
    lon: float
    er_beds: int


@dataclass(frozen=True)
class Candidate:
    """A ranked ER with the figures behind its place and a plain explanation."""

    site: Site
    rank: int
    distance_km: float
    eta_min: float
    explanation: str


def rank_sites(
    lat: float, lon: float, triage_level: int, sites: list[Site], exclude: set[str] | None = None
) -> list[Candidate]:
    """Order ``sites`` by estimated travel time from (lat, lon); ties by id.

    Sites with no ER bed and those in ``exclude`` are left out.
    """
    speed = SPEED_KMH_BY_TRIAGE.get(triage_level, 35.0)
    scored = []
    for site in sites:
        if site.er_beds <= 0 or (exclude and site.id in exclude):
            continue
        road_km = haversine_km(lat, lon, site.lat, site.lon) * ROAD_FACTOR
        scored.append((road_km / speed * 60.0, road_km, site))
    scored.sort(key=lambda item: (item[0], item[2].id))
    return [
        Candidate(
            site=site,
            rank=rank,
            distance_km=round(road_km, 2),
            eta_min=round(eta, 1),
            explanation=f"{eta:.0f} min by road estimate ({road_km:.1f} km), {site.er_beds} ER beds",
        )
        for rank, (eta, road_km, site) in enumerate(scored, start=1)
    ]
