"""Travel time from an ambulance to each ER: a great-circle estimate, or an
OSRM-compatible routing service when one is configured (falling back to the
estimate whenever it fails)."""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

logger = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0088
ROAD_FACTOR = 1.3
"""Roads are longer than the straight line; 1.3 is a common urban estimate."""
SPEED_KMH_BY_TRIAGE = {1: 50.0, 2: 45.0, 3: 40.0, 4: 35.0, 5: 35.0}
"""Average urban ambulance speed, faster with lights and siren for urgent cases."""
LIGHTS_FACTOR_BY_TRIAGE = {1: 0.8, 2: 0.85, 3: 1.0, 4: 1.0, 5: 1.0}
"""Routing engines time ordinary cars; lights and siren shorten that."""


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS-84 points, in km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Point:
    """A WGS-84 position."""

    lat: float
    lon: float


@dataclass(frozen=True)
class Travel:
    """How long the drive takes, how far it is, and where the figure came from."""

    eta_min: float
    distance_km: float
    source: Literal["estimate", "routing"]


def estimate(origin: Point, destination: Point, triage_level: int) -> Travel:
    """Straight-line distance times the road factor, at the speed for the triage level."""
    road_km = haversine_km(origin.lat, origin.lon, destination.lat, destination.lon) * ROAD_FACTOR
    speed = SPEED_KMH_BY_TRIAGE.get(triage_level, 35.0)
    return Travel(eta_min=round(road_km / speed * 60.0, 2), distance_km=round(road_km, 2),
                  source="estimate")


class Router(Protocol):
    """Computes travel from one origin to many destinations."""

    def travel(self, origin: Point, destinations: Sequence[Point],
               triage_level: int) -> list[Travel]:
        """One :class:`Travel` per destination, in order."""


class GreatCircleRouter:
    """The estimate for every destination; needs no network."""

    def travel(self, origin: Point, destinations: Sequence[Point],
               triage_level: int) -> list[Travel]:
        return [estimate(origin, d, triage_level) for d in destinations]


class OsrmRouter:
    """Durations from an OSRM-compatible ``/table`` service, e.g.
    ``http://osrm:5000``; any failure falls back to the estimate, per call."""

    def __init__(self, base_url: str, timeout_s: float = 2.0, profile: str = "driving") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.profile = profile
        self._fallback = GreatCircleRouter()

    def travel(self, origin: Point, destinations: Sequence[Point],
               triage_level: int) -> list[Travel]:
        if not destinations:
            return []
        coordinates = ";".join(f"{p.lon:.6f},{p.lat:.6f}" for p in (origin, *destinations))
        url = (f"{self.base_url}/table/v1/{self.profile}/{coordinates}"
               "?sources=0&annotations=duration,distance")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
            if body.get("code") != "Ok":
                raise ValueError(f"routing answered {body.get('code')!r}")
            durations = body["durations"][0][1:]
            distances = body.get("distances", [[None] * (len(destinations) + 1)])[0][1:]
            if len(durations) != len(destinations) or any(d is None for d in durations):
                raise ValueError("routing found no route to some destinations")
        except (OSError, urllib.error.URLError, ValueError, KeyError, IndexError,
                TypeError) as exc:
            logger.warning("routing failed; using the straight-line estimate",
                           extra={"routing_url": self.base_url, "error": str(exc)})
            return self._fallback.travel(origin, destinations, triage_level)
        factor = LIGHTS_FACTOR_BY_TRIAGE.get(triage_level, 1.0)
        result = []
        for destination, seconds, metres in zip(destinations, durations, distances, strict=True):
            km = metres / 1000 if metres is not None else estimate(
                origin, destination, triage_level).distance_km
            result.append(Travel(eta_min=round(seconds / 60 * factor, 2), distance_km=round(km, 2),
                                 source="routing"))
        return result


def make_router(routing_url: str | None, timeout_s: float = 2.0) -> Router:
    """OSRM when a URL is configured, else the estimate."""
    return OsrmRouter(routing_url, timeout_s) if routing_url else GreatCircleRouter()
