"""Seed data for a demo or test deployment: Munich customers, sites, devices, technicians, parts, stock."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import numpy as np
import psycopg

from fieldops.db.repo import catalog
from fieldops.domain import Shift, StockKind
from ingest.broker_config import hash_password
from simulators.geography import MUNICH, Region
from simulators.models import MODEL_SPECS, PARTS, SKILLS

log = logging.getLogger(__name__)

META_KEY = "simulator.seed"
SHIFT = Shift(time(8, 0), time(17, 0), time(12, 0), time(13, 30), 1800)
CONTRACTS = (("standard", 0.7), ("premium", 0.3))

_COMPANY_A = ("Isar", "Bavaria", "Alpen", "Würm", "Amper", "Nord", "Süd", "Residenz", "Hofgarten",
              "Schwabing", "Moosach", "Riem", "Pasing", "Sendling", "Bogenhausen", "Laim")
_COMPANY_B = ("Logistik", "Klinikum", "Bürohaus", "Kühlhaus", "Präzisionsteile", "Druckerei",
              "Verwaltung", "Einkaufszentrum", "Hotel", "Brauerei", "Rechenzentrum", "Metallbau",
              "Lebensmittel", "Immobilien", "Kunststofftechnik", "Pharma")
_COMPANY_C = ("GmbH", "AG", "GmbH & Co. KG", "KG", "eG")
_FIRST = ("Anna", "Lukas", "Sophie", "Maximilian", "Marie", "Felix", "Lena", "Jonas", "Laura", "Tobias",
          "Julia", "Florian", "Sarah", "Stefan", "Katharina", "Andreas", "Eva", "Michael", "Theresa",
          "Sebastian", "Johanna", "Markus", "Hannah", "Thomas")
_LAST = ("Huber", "Bauer", "Wagner", "Müller", "Schmid", "Maier", "Hofmann", "Gruber", "Fischer",
         "Weber", "Brandl", "Lechner", "Moser", "Winkler", "Berger", "Kellner", "Zimmermann", "Fuchs")


@dataclass(frozen=True, slots=True)
class SeedResult:
    created: bool
    customers: int
    sites: int
    devices: int
    technicians: int
    warehouses: int


def device_password(secret: str, serial: str) -> str:
    """The simulated device's MQTT password, derived from the deployment secret and its serial."""
    return hmac.new(secret.encode(), serial.encode(), hashlib.sha256).hexdigest()[:24]


def ensure_catalogue(conn: psycopg.Connection) -> None:
    """Parts and the simulated device models (idempotent upserts)."""
    for sku, name, cost in PARTS:
        catalog.upsert_part(conn, sku, name, cost)
    for spec in MODEL_SPECS.values():
        catalog.upsert_device_model(conn, spec.model)


def seed_data(
    conn: psycopg.Connection, *, now: datetime, secret: str, devices: int = 500, technicians: int = 20,
    seed: int = 7, region: Region = MUNICH,
) -> SeedResult:
    """Create the demo world once; a second run (any counts) changes nothing and says so."""
    if devices < 1 or technicians < 1:
        raise ValueError("devices, technicians: must be at least 1")
    ensure_catalogue(conn)
    row = conn.execute("SELECT value FROM fieldops_meta WHERE key = %s", (META_KEY,)).fetchone()
    if row is not None:
        counts = json.loads(row[0])
        log.info("seed data already present (%s); nothing to do", counts)
        return SeedResult(created=False, **counts)
    rng = np.random.default_rng(seed)
    parts = catalog.parts_by_sku(conn)
    warehouses = _warehouses(conn, region, parts, rng)
    n_sites = max(1, round(devices / 2.4))
    placed = region.sample(rng, n_sites)
    customers: list[tuple[int, str]] = []
    site_rows = []
    i = 0
    while i < n_sites:
        name = f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)} {rng.choice(_COMPANY_C)}"
        contract = str(rng.choice([c for c, _ in CONTRACTS], p=[p for _, p in CONTRACTS]))
        customer = catalog.create_customer(conn, name, contract)
        customers.append((customer.id, contract))
        for _ in range(min(int(rng.integers(1, 4)), n_sites - i)):
            centre, location, address = placed[i]
            kind = "industrial" if rng.random() < 0.45 else "building"
            site = catalog.create_site(conn, customer.id, f"{name} {centre.name} {i + 1}", address,
                                       location, region.name)
            site_rows.append((site.id, kind))
            i += 1
    serials = _devices(conn, site_rows, devices, now, secret, rng)
    techs = _technicians(conn, technicians, region, parts, rng)
    counts = {"customers": len(customers), "sites": len(site_rows), "devices": len(serials),
              "technicians": techs, "warehouses": warehouses}
    conn.execute("INSERT INTO fieldops_meta (key, value) VALUES (%s, %s)", (META_KEY, json.dumps(counts)))
    log.info("seed data created: %s", counts)
    return SeedResult(created=True, **counts)


def _warehouses(conn, region: Region, parts, rng) -> int:
    for wh in region.warehouses:
        loc = catalog.create_stock_location(conn, StockKind.WAREHOUSE, wh.name, wh.location)
        for part in parts.values():
            catalog.set_stock(conn, loc.id, part.id, int(rng.integers(4, 25)), min_quantity=3)
    return len(region.warehouses)


def _devices(conn, site_rows, n: int, now: datetime, secret: str, rng) -> list[str]:
    mix = {"industrial": (("air_compressor", 0.7), ("chiller", 0.3)),
           "building": (("elevator_drive", 0.55), ("chiller", 0.45))}
    serials = []
    order = rng.permutation(len(site_rows))
    k = 0
    while len(serials) < n:
        site_id, kind = site_rows[int(order[k % len(order)])]
        k += 1
        codes, weights = zip(*mix[kind], strict=True)
        code = str(rng.choice(codes, p=weights))
        serial = f"{MODEL_SPECS[code].serial_prefix}-{len(serials) + 1:06d}"
        installed = now - timedelta(days=float(rng.uniform(180, 4000)))
        catalog.create_device(conn, serial, code, site_id, installed,
                              password_hash=hash_password(device_password(secret, serial)))
        serials.append(serial)
    return serials


_VAN_STOCK = ("FLT-AIR-AC", "CONT-3P-95A", "DOOR-ROLLER", "DOOR-BELT", "CHEM-COIL-5L", "OIL-AC-5L",
              "SEAL-KIT-CH", "REF-R134A-10")


def _technicians(conn, n: int, region: Region, parts, rng) -> int:
    homes = region.sample(rng, n)
    for t in range(n):
        name = f"{_FIRST[t % len(_FIRST)]} {_LAST[int(rng.integers(len(_LAST)))]}"
        primary = SKILLS[t % len(SKILLS)]
        others = [s for s in SKILLS if s != primary]
        skills = {primary, str(rng.choice(others))}
        tech = catalog.create_technician(conn, name, skills, homes[t][1], SHIFT, region.name, region.timezone)
        van = catalog.create_stock_location(conn, StockKind.VAN, f"Van of {name}", technician_id=tech.id)
        for sku in _VAN_STOCK:  # enough for one repair of every mode that needs the part, sometimes more
            need = max(p.quantity for m in MODEL_SPECS.values() for f in m.model.failure_modes
                       for p in f.parts if p.sku == sku)
            catalog.set_stock(conn, van.id, parts[sku].id, need + int(rng.integers(0, 3)), min_quantity=need)
    return n
