"""Travel-time providers: geodesic distance x circuity / speed by default, OSRM when configured.

The reference distance is ``geopy.distance.geodesic`` (geographiclib's WGS-84 inverse). A full
matrix is computed vectorised with numpy by Vincenty's inverse formula, which agrees with it
to well under a millimetre wherever it converges; the few pairs where it does not (nearly
antipodal points) are handed to geographiclib one by one.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from geographiclib.geodesic import Geodesic

from fieldops.domain import GeoPoint

log = logging.getLogger(__name__)
_WGS84 = Geodesic.WGS84
_A = _WGS84.a
_F = _WGS84.f
_B = _A * (1 - _F)
_MAX_ITERATIONS = 60
_TOLERANCE_RAD = 1e-12
# closer than this to antipodal (great-circle angle, degrees): geographiclib decides
_ANTIPODAL_MARGIN_DEG = 1.0
_CHUNK = 250_000


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


def _vincenty(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Vincenty's inverse on WGS-84 (degrees in, metres out) and a mask of converged pairs."""
    u1 = np.arctan((1 - _F) * np.tan(np.radians(lat1)))
    u2 = np.arctan((1 - _F) * np.tan(np.radians(lat2)))
    sin_u1, cos_u1, sin_u2, cos_u2 = np.sin(u1), np.cos(u1), np.sin(u2), np.cos(u2)
    big_l = np.radians((lon2 - lon1 + 180.0) % 360.0 - 180.0)
    lam = big_l.copy()

    def terms(i: np.ndarray | slice, lam_i: np.ndarray):
        sin_lam, cos_lam = np.sin(lam_i), np.cos(lam_i)
        cross = cos_u1[i] * sin_u2[i] - sin_u1[i] * cos_u2[i] * cos_lam
        sin_sigma = np.hypot(cos_u2[i] * sin_lam, cross)
        cos_sigma = sin_u1[i] * sin_u2[i] + cos_u1[i] * cos_u2[i] * cos_lam
        sigma = np.arctan2(sin_sigma, cos_sigma)
        safe = np.where(sin_sigma == 0, 1.0, sin_sigma)
        sin_alpha = np.where(sin_sigma == 0, 0.0, cos_u1[i] * cos_u2[i] * sin_lam / safe)
        cos2_alpha = 1 - sin_alpha**2
        safe_c = np.where(cos2_alpha == 0, 1.0, cos2_alpha)
        cos_2sm = np.where(cos2_alpha == 0, 0.0,
                           cos_sigma - 2 * sin_u1[i] * sin_u2[i] / safe_c)  # equatorial line: 0
        return sin_sigma, cos_sigma, sigma, sin_alpha, cos2_alpha, cos_2sm

    active = np.arange(lam.size)
    for _ in range(_MAX_ITERATIONS):
        if not active.size:
            break
        _, cos_sigma, sigma, sin_alpha, cos2_alpha, cos_2sm = terms(active, lam[active])
        sin_sigma = np.sin(sigma)
        c = _F / 16 * cos2_alpha * (4 + _F * (4 - 3 * cos2_alpha))
        new = big_l[active] + (1 - c) * _F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm**2)))
        done = np.abs(new - lam[active]) < _TOLERANCE_RAD
        lam[active] = new
        active = active[~done]
    converged = np.ones(lam.size, dtype=bool)
    converged[active] = False
    converged &= np.abs(lam) <= np.pi

    all_ = slice(None)
    sin_sigma, cos_sigma, sigma, _, cos2_alpha, cos_2sm = terms(all_, lam)
    u_sq = cos2_alpha * (_A**2 - _B**2) / _B**2
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta = big_b * sin_sigma * (cos_2sm + big_b / 4 * (
        cos_sigma * (-1 + 2 * cos_2sm**2)
        - big_b / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)))
    metres = _B * big_a * (sigma - delta)
    # on the sphere of reduced latitudes, near-antipodal pairs are where Vincenty is unreliable
    near_antipodal = cos_sigma < np.cos(np.radians(180.0 - _ANTIPODAL_MARGIN_DEG))
    return np.where(sin_sigma == 0, 0.0, metres), converged & ~near_antipodal


def geodesic_metres(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
                    ) -> np.ndarray:
    """WGS-84 geodesic distance in metres between paired points (arrays of degrees).

    Equal to ``geopy.distance.geodesic`` within a millimetre: Vincenty vectorised, geographiclib
    for the pairs it cannot decide.
    """
    lat1, lon1, lat2, lon2 = (np.asarray(x, dtype=float).ravel() for x in (lat1, lon1, lat2, lon2))
    out = np.empty(lat1.size)
    for lo in range(0, lat1.size, _CHUNK):
        part = slice(lo, lo + _CHUNK)
        metres, ok = _vincenty(lat1[part], lon1[part], lat2[part], lon2[part])
        for k in np.flatnonzero(~ok):
            i = lo + k
            metres[k] = _WGS84.Inverse(lat1[i], lon1[i], lat2[i], lon2[i], Geodesic.DISTANCE)["s12"]
        out[part] = metres
    return out


@dataclass
class GeodesicProvider:
    """Geodesic distance times a circuity factor over an average speed, per region; cached.

    The cache holds the geodesic metres between every pair of points seen so far (up to
    ``max_cached_points``, then it starts afresh), so a re-plan with one new site computes one
    new row rather than the whole matrix.
    """

    regions: Mapping[str, RegionSpeed] = field(default_factory=lambda: {"default": RegionSpeed()})
    max_cached_points: int = 4000
    _index: dict[tuple[float, float], int] = field(default_factory=dict)
    _metres: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def _indexes(self, points: Sequence[GeoPoint]) -> np.ndarray:
        """Cache indexes of ``points``, computing the rows of points not seen before."""
        keys = [(p.lat, p.lon) for p in points]
        new = list(dict.fromkeys(k for k in keys if k not in self._index))
        if len(self._index) + len(new) > self.max_cached_points:
            self._index.clear()
            self._metres = np.zeros((0, 0))
            new = list(dict.fromkeys(keys))
        if new:
            self._extend(new)
        return np.fromiter((self._index[k] for k in keys), dtype=np.intp, count=len(keys))

    def _extend(self, new: list[tuple[float, float]]) -> None:
        old_n, k = len(self._index), len(new)
        coords = np.array(list(self._index) + new, dtype=float).reshape(-1, 2)
        grown = np.zeros((old_n + k, old_n + k))
        grown[:old_n, :old_n] = self._metres
        # each unordered pair once (new x old, and new x new above the diagonal): exactly symmetric
        rows, cols = np.meshgrid(np.arange(old_n, old_n + k), np.arange(old_n), indexing="ij")
        tri_r, tri_c = np.triu_indices(k, 1)
        a = np.concatenate([rows.ravel(), tri_r + old_n])
        b = np.concatenate([cols.ravel(), tri_c + old_n])
        metres = geodesic_metres(coords[a, 0], coords[a, 1], coords[b, 0], coords[b, 1])
        grown[a, b] = metres
        grown[b, a] = metres
        for key in new:
            self._index[key] = len(self._index)
        self._metres = grown

    @property
    def cached_points(self) -> int:
        return len(self._index)

    def metres(self, a: GeoPoint, b: GeoPoint) -> float:
        i, j = self._indexes([a, b])
        return float(self._metres[i, j])

    def matrices(self, points: Sequence[GeoPoint], region: str = "default") -> Matrices:
        speed = self.regions.get(region) or self.regions["default"]
        idx = self._indexes(points)
        dist = np.rint(self._metres[np.ix_(idx, idx)] * speed.circuity)
        dur = np.rint(dist / (speed.speed_kmh / 3.6))
        return (tuple(map(tuple, dur.astype(np.int64).tolist())),
                tuple(map(tuple, dist.astype(np.int64).tolist())))


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
