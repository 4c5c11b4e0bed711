"""The default travel-time provider: geodesic metres x circuity over the region's speed."""

from __future__ import annotations

import numpy as np
from geopy.distance import geodesic

from dispatch.travel import GeodesicProvider, RegionSpeed, geodesic_metres, provider_for
from fieldops.domain import GeoPoint

BERLIN = GeoPoint(52.5200, 13.4050)
POTSDAM = GeoPoint(52.3906, 13.0645)
TOLERANCE_M = 0.5

# named point sets: a city day, the same site twice and a millimetre apart, the date line,
# the poles, the equator, and pairs near or at the antipode (where Vincenty fails to converge)
CITY = [BERLIN, POTSDAM, GeoPoint(52.4000, 13.5000), GeoPoint(52.6000, 13.2000)]
NEAR_IDENTICAL = [BERLIN, GeoPoint(52.5200, 13.4050), GeoPoint(52.52000001, 13.40500001)]
DATE_LINE = [GeoPoint(-17.7, 179.99), GeoPoint(-17.8, -179.99), GeoPoint(65.0, -179.5)]
POLES = [GeoPoint(90.0, 0.0), GeoPoint(-90.0, 0.0), GeoPoint(89.999, 45.0), GeoPoint(0.0, 0.0)]
ANTIPODAL = [GeoPoint(0.0, 0.0), GeoPoint(0.0, 180.0), GeoPoint(0.5, 179.7), GeoPoint(0.0, 179.5),
             GeoPoint(-52.52, -166.595), GeoPoint(-52.0, -166.0), GeoPoint(30.0, 0.0),
             GeoPoint(-29.9, 179.8)]


def _reference(points: list[GeoPoint]) -> np.ndarray:
    return np.array([[geodesic((a.lat, a.lon), (b.lat, b.lon)).meters for b in points]
                     for a in points])


def _vectorised(points: list[GeoPoint]) -> np.ndarray:
    a, b = np.meshgrid(np.arange(len(points)), np.arange(len(points)), indexing="ij")
    lat = np.array([p.lat for p in points])
    lon = np.array([p.lon for p in points])
    return geodesic_metres(lat[a], lon[a], lat[b], lon[b]).reshape(a.shape)


def test_vectorised_geodesic_equals_geopy_on_named_point_sets():
    for points in (CITY, NEAR_IDENTICAL, DATE_LINE, POLES, ANTIPODAL, CITY + ANTIPODAL):
        assert np.abs(_vectorised(points) - _reference(points)).max() < TOLERANCE_M


def test_vectorised_geodesic_equals_geopy_on_random_world_pairs():
    rng = np.random.default_rng(7)
    lat1, lat2 = rng.uniform(-90, 90, (2, 300))
    lon1, lon2 = rng.uniform(-180, 180, (2, 300))
    ours = geodesic_metres(lat1, lon1, lat2, lon2)
    ref = [geodesic((a, b), (c, d)).meters for a, b, c, d in zip(lat1, lon1, lat2, lon2, strict=True)]
    assert np.abs(ours - np.array(ref)).max() < TOLERANCE_M


def test_provider_metres_and_matrix_match_geopy():
    provider = GeodesicProvider({"default": RegionSpeed(36.0, 1.0)})  # 10 m/s, no detour
    _, dist = provider.matrices(CITY + ANTIPODAL)
    assert np.abs(np.array(dist) - _reference(CITY + ANTIPODAL)).max() <= TOLERANCE_M + 0.5
    assert abs(provider.metres(BERLIN, POTSDAM) - geodesic((52.52, 13.405), (52.3906, 13.0645)).meters
               ) < TOLERANCE_M


def test_geodesic_times_use_circuity_and_region_speed():
    provider = GeodesicProvider({"default": RegionSpeed(), "rural": RegionSpeed(60.0, 1.5)})
    straight = provider.metres(BERLIN, POTSDAM)
    assert 26_000 < straight < 27_500
    dur, dist = provider.matrices([BERLIN, POTSDAM], "rural")
    assert dist[0][1] == round(straight * 1.5)
    assert dur[0][1] == round(dist[0][1] / (60.0 / 3.6))
    assert dur[0][0] == 0 and dist[1][0] == dist[0][1]


def test_cache_extends_by_new_points_only_and_matches_a_fresh_provider():
    provider = GeodesicProvider()
    provider.matrices(CITY)
    grown = provider.matrices([DATE_LINE[0], *CITY, POLES[3], BERLIN])
    assert provider.cached_points == len(CITY) + 2
    assert grown == GeodesicProvider().matrices([DATE_LINE[0], *CITY, POLES[3], BERLIN])


def test_cache_starts_afresh_past_its_size_limit():
    provider = GeodesicProvider(max_cached_points=5)
    provider.matrices(CITY)
    provider.matrices(DATE_LINE)
    assert provider.cached_points == len(DATE_LINE)
    assert provider.matrices(DATE_LINE) == GeodesicProvider().matrices(DATE_LINE)


def test_matrix_is_exactly_symmetric():
    dur, dist = GeodesicProvider().matrices(CITY + DATE_LINE + POLES)
    assert dist == tuple(zip(*dist, strict=True)) and dur == tuple(zip(*dur, strict=True))


def test_unknown_region_falls_back_to_default_and_osrm_only_when_configured():
    provider = provider_for("")
    assert isinstance(provider, GeodesicProvider)
    dur, _ = provider.matrices([BERLIN, POTSDAM], "nowhere")
    assert dur == GeodesicProvider().matrices([BERLIN, POTSDAM])[0]
