"""The default travel-time provider: geodesic metres x circuity over the region's speed."""

from __future__ import annotations

from dispatch.travel import GeodesicProvider, RegionSpeed, provider_for
from fieldops.domain import GeoPoint

BERLIN = GeoPoint(52.5200, 13.4050)
POTSDAM = GeoPoint(52.3906, 13.0645)


def test_geodesic_times_use_circuity_and_region_speed():
    provider = GeodesicProvider({"default": RegionSpeed(), "rural": RegionSpeed(60.0, 1.5)})
    straight = provider.metres(BERLIN, POTSDAM)
    assert 26_000 < straight < 27_500
    dur, dist = provider.matrices([BERLIN, POTSDAM], "rural")
    assert dist[0][1] == round(straight * 1.5)
    assert dur[0][1] == round(dist[0][1] / (60.0 / 3.6))
    assert dur[0][0] == 0 and dist[1][0] == dist[0][1]


def test_unknown_region_falls_back_to_default_and_osrm_only_when_configured():
    provider = provider_for("")
    assert isinstance(provider, GeodesicProvider)
    dur, _ = provider.matrices([BERLIN, POTSDAM], "nowhere")
    assert dur == GeodesicProvider().matrices([BERLIN, POTSDAM])[0]
