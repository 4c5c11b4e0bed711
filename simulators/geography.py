"""The service region: Munich and its suburbs, with sites spread by population around weighted centres."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fieldops.domain import GeoPoint


@dataclass(frozen=True, slots=True)
class Centre:
    name: str
    postcode: str
    location: GeoPoint
    population: int  # weight for placing sites
    spread_km: float  # standard deviation of sites around the centre
    streets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Warehouse:
    name: str
    address: str
    location: GeoPoint


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    timezone: str
    centres: tuple[Centre, ...]
    warehouses: tuple[Warehouse, ...]

    def sample(self, rng: np.random.Generator, n: int) -> list[tuple[Centre, GeoPoint, str]]:
        """``n`` (centre, location, street address) drawn by population around the centres."""
        weights = np.array([c.population for c in self.centres], dtype=float)
        picks = rng.choice(len(self.centres), size=n, p=weights / weights.sum())
        out = []
        for i in picks:
            c = self.centres[i]
            d_lat, d_lon = rng.normal(0.0, c.spread_km, 2)
            lat = c.location.lat + d_lat / 111.2
            lon = c.location.lon + d_lon / (111.2 * math.cos(math.radians(c.location.lat)))
            street = c.streets[int(rng.integers(len(c.streets)))]
            number = int(rng.integers(1, 180))
            out.append((c, GeoPoint(round(lat, 6), round(lon, 6)), f"{street} {number}, {c.postcode} {c.name}"))
        return out


MUNICH = Region(
    name="munich",
    timezone="Europe/Berlin",
    centres=(
        Centre("München", "80331", GeoPoint(48.1374, 11.5755), 1_510_000, 4.5,
               ("Leopoldstraße", "Landsberger Straße", "Rosenheimer Straße", "Dachauer Straße",
                "Schleißheimer Straße", "Wasserburger Landstraße", "Ingolstädter Straße",
                "Lindwurmstraße", "Arnulfstraße", "Prinzregentenstraße", "Fürstenrieder Straße")),
        Centre("Garching", "85748", GeoPoint(48.2490, 11.6510), 18_000, 1.5,
               ("Lichtenbergstraße", "Schleißheimer Straße", "Boltzmannstraße")),
        Centre("Freising", "85354", GeoPoint(48.4029, 11.7488), 49_000, 2.0,
               ("Münchner Straße", "Erdinger Straße", "Mainburger Straße")),
        Centre("Erding", "85435", GeoPoint(48.3064, 11.9076), 37_000, 1.8,
               ("Landshuter Straße", "Anton-Bruckner-Straße", "Rotkreuzstraße")),
        Centre("Dachau", "85221", GeoPoint(48.2600, 11.4342), 48_000, 2.0,
               ("Münchner Straße", "Schleißheimer Straße", "Augsburger Straße")),
        Centre("Fürstenfeldbruck", "82256", GeoPoint(48.1790, 11.2550), 38_000, 1.8,
               ("Maisacher Straße", "Hauptstraße", "Oskar-von-Miller-Straße")),
        Centre("Germering", "82110", GeoPoint(48.1330, 11.3700), 41_000, 1.5,
               ("Landsberger Straße", "Industriestraße", "Münchner Straße")),
        Centre("Starnberg", "82319", GeoPoint(47.9990, 11.3410), 23_000, 1.5,
               ("Hanfelder Straße", "Petersbrunner Straße", "Gautinger Straße")),
        Centre("Unterhaching", "82008", GeoPoint(48.0660, 11.6150), 26_000, 1.5,
               ("Biberger Straße", "Hauptstraße", "Münchner Straße")),
        Centre("Ottobrunn", "85521", GeoPoint(48.0640, 11.6640), 22_000, 1.2,
               ("Rosenheimer Landstraße", "Ottostraße", "Putzbrunner Straße")),
    ),
    warehouses=(
        Warehouse("Warehouse North (Garching-Hochbrück)", "Daimlerstraße 8, 85748 Garching",
                  GeoPoint(48.2355, 11.6150)),
        Warehouse("Warehouse West (Germering)", "Industriestraße 21, 82110 Germering",
                  GeoPoint(48.1300, 11.3850)),
        Warehouse("Warehouse South-East (Putzbrunn)", "Gewerbering 5, 85640 Putzbrunn",
                  GeoPoint(48.0760, 11.7200)),
    ),
)
