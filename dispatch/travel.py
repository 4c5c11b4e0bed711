"""Travel-time providers: geodesic distance x circuity / speed by default, OSRM when configured.

The geodesic is geographiclib's WGS-84 inverse (what ``geopy.distance.geodesic`` computes),
called with the distance-only mask, which is about twice as fast as going through geopy.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from geographiclib.geodesic import Geodesic

from fieldops.domain import GeoPoint

log = logging.getLogger(__name__)
_WGS84 = Geodesic.WGS84


@dataclass(frozen=True, slots=True)
class RegionSpeed:
    """Average road speed and circuity factor (road distance / straight-line distance)."""

    speed_kmh: float = 40.0
    circuity: float = 1.3

    def __post_init__(self) -> None:
        if self.speed_kmh <= 0 or self.circuity < 1:
            raise ValueError("region speed: speed_kmh must be positive and circuity >= 1")


Matrices = tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]


class TravelProvider(Protocol):
    def matrices(self, points: Sequence[GeoPoint], region: str = "default") -> Matrices:
        """Return (duration_s, distance_m) between every pair of ``points``."""
        ...


@dataclass
class GeodesicProvider:
    """Geodesic distance times a circuity factor over an average speed, per region; cached."""

    regions: Mapping[str, RegionSpeed] = field(default_factory=lambda: {"default": RegionSpeed()})
    _cache: dict[tuple[float, float, float, float], float] = field(default_factory=dict)

    def metres(self, a: GeoPoint, b: GeoPoint) -> float:
        key = (a.lat, a.lon, b.lat, b.lon) if (a.lat, a.lon) <= (b.lat, b.lon) else (
            b.lat, b.lon, a.lat, a.lon)
        found = self._cache.get(key)
        if found is None:
            found = _WGS84.Inverse(a.lat, a.lon, b.lat, b.lon, Geodesic.DISTANCE)["s12"]
            self._cache[key] = found
        return found

    def matrices(self, points: Sequence[GeoPoint], region: str = "default") -> Matrices:
        speed = self.regions.get(region) or self.regions["default"]
        mps = speed.speed_kmh / 3.6
        dist = tuple(tuple(round(self.metres(a, b) * speed.circuity) for b in points) for a in points)
        dur = tuple(tuple(round(d / mps) for d in row) for row in dist)
        return dur, dist


@dataclass
class OsrmProvider:
    """Road travel times from an OSRM ``table`` endpoint (``FIELDOPS_OSRM_URL``)."""

    base_url: str
    timeout_s: float = 30.0

    def matrices(self, points: Sequence[GeoPoint], region: str = "default") -> Matrices:
        coords = ";".join(f"{p.lon},{p.lat}" for p in points)
        url = f"{self.base_url.rstrip('/')}/table/v1/driving/{coords}?annotations=duration,distance"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310
            body = json.load(resp)
        if body.get("code") != "Ok":
            raise RuntimeError(f"OSRM table failed: {body.get('code')} {body.get('message', '')}")
        dur = tuple(tuple(round(x or 0) for x in row) for row in body["durations"])
        dist = tuple(tuple(round(x or 0) for x in row) for row in body["distances"])
        return dur, dist


def provider_for(osrm_url: str) -> TravelProvider:
    """OSRM when a URL is configured, else the geodesic default."""
    return OsrmProvider(osrm_url) if osrm_url else GeodesicProvider()
