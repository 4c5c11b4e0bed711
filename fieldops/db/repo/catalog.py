"""Customers, sites, device models, devices, technicians, parts and stock locations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import psycopg

from fieldops.domain import (
    Customer,
    Device,
    DeviceModel,
    FailureMode,
    GeoPoint,
    Metric,
    Part,
    PartQuantity,
    Shift,
    Site,
    StockKind,
    StockLocation,
    Technician,
)


class NotFound(LookupError):
    """A referenced row does not exist; the message names what was looked for."""


# ---------------------------------------------------------------- customers and sites


def create_customer(conn: psycopg.Connection, name: str, contract: str = "standard") -> Customer:
    (cid,) = conn.execute(
        "INSERT INTO customers (name, contract) VALUES (%s, %s) RETURNING id", (name, contract)
    ).fetchone()
    return Customer(cid, name, contract)


def create_site(
    conn: psycopg.Connection, customer_id: int, name: str, address: str, location: GeoPoint,
    region: str = "default",
) -> Site:
    (sid,) = conn.execute(
        "INSERT INTO sites (customer_id, name, address, lat, lon, region) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (customer_id, name, address, location.lat, location.lon, region),
    ).fetchone()
    return Site(sid, customer_id, name, address, location, region)


def get_site(conn: psycopg.Connection, site_id: int) -> Site:
    row = conn.execute(
        "SELECT id, customer_id, name, address, lat, lon, region FROM sites WHERE id = %s", (site_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"site {site_id}")
    return Site(row[0], row[1], row[2], row[3], GeoPoint(row[4], row[5]), row[6])


# ---------------------------------------------------------------- parts


def upsert_part(conn: psycopg.Connection, sku: str, name: str, unit_cost: float = 0.0) -> Part:
    (pid,) = conn.execute(
        "INSERT INTO parts (sku, name, unit_cost) VALUES (%s, %s, %s) "
        "ON CONFLICT (sku) DO UPDATE SET name = excluded.name, unit_cost = excluded.unit_cost "
        "RETURNING id",
        (sku, name, unit_cost),
    ).fetchone()
    return Part(pid, sku, name, unit_cost)


def parts_by_sku(conn: psycopg.Connection) -> dict[str, Part]:
    rows = conn.execute("SELECT id, sku, name, unit_cost FROM parts").fetchall()
    return {r[1]: Part(r[0], r[1], r[2], float(r[3])) for r in rows}


# ---------------------------------------------------------------- device models


def upsert_device_model(conn: psycopg.Connection, model: DeviceModel) -> int:
    """Create or update a model with its metrics and failure modes; parts must exist. Returns its id."""
    (model_id,) = conn.execute(
        "INSERT INTO device_models (code, name) VALUES (%s, %s) "
        "ON CONFLICT (code) DO UPDATE SET name = excluded.name RETURNING id",
        (model.code, model.name),
    ).fetchone()
    conn.execute("DELETE FROM model_metrics WHERE model_id = %s", (model_id,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO model_metrics (model_id, metric_index, name, unit, min_value, max_value) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(model_id, m.index, m.name, m.unit, m.min_value, m.max_value) for m in model.metrics],
        )
    skus = parts_by_sku(conn)
    for fm in model.failure_modes:
        (fm_id,) = conn.execute(
            "INSERT INTO failure_modes (model_id, code, name, skill, repair_duration_s) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model_id, code) DO UPDATE SET "
            "name = excluded.name, skill = excluded.skill, repair_duration_s = excluded.repair_duration_s "
            "RETURNING id",
            (model_id, fm.code, fm.name, fm.skill, fm.repair_duration_s),
        ).fetchone()
        conn.execute("DELETE FROM failure_mode_parts WHERE failure_mode_id = %s", (fm_id,))
        for pq in fm.parts:
            if pq.sku not in skus:
                raise NotFound(f"part {pq.sku} (needed by failure mode {fm.code})")
            conn.execute(
                "INSERT INTO failure_mode_parts (failure_mode_id, part_id, quantity) VALUES (%s, %s, %s)",
                (fm_id, skus[pq.sku].id, pq.quantity),
            )
    return int(model_id)


def device_models(conn: psycopg.Connection) -> dict[str, DeviceModel]:
    """Every device model by code, with metrics in slot order and failure modes with parts."""
    models = conn.execute("SELECT id, code, name FROM device_models ORDER BY id").fetchall()
    metrics: dict[int, list[Metric]] = {}
    for model_id, idx, name, unit, lo, hi in conn.execute(
        "SELECT model_id, metric_index, name, unit, min_value, max_value FROM model_metrics "
        "ORDER BY model_id, metric_index"
    ):
        metrics.setdefault(model_id, []).append(Metric(idx, name, unit, lo, hi))
    parts: dict[int, list[PartQuantity]] = {}
    for fm_id, sku, qty in conn.execute(
        "SELECT fp.failure_mode_id, p.sku, fp.quantity FROM failure_mode_parts fp "
        "JOIN parts p ON p.id = fp.part_id ORDER BY p.sku"
    ):
        parts.setdefault(fm_id, []).append(PartQuantity(sku, qty))
    modes: dict[int, list[FailureMode]] = {}
    for fm_id, model_id, code, name, skill, duration in conn.execute(
        "SELECT id, model_id, code, name, skill, repair_duration_s FROM failure_modes ORDER BY id"
    ):
        modes.setdefault(model_id, []).append(
            FailureMode(code, name, skill, duration, tuple(parts.get(fm_id, ())))
        )
    return {
        code: DeviceModel(code, name, tuple(metrics.get(mid, ())), tuple(modes.get(mid, ())), id=mid)
        for mid, code, name in models
    }


# ---------------------------------------------------------------- devices


def create_device(
    conn: psycopg.Connection, serial: str, model_code: str, site_id: int, installed_at: datetime,
    password_hash: str | None = None,
) -> Device:
    row = conn.execute(
        "INSERT INTO devices (serial, model_id, site_id, installed_at, mqtt_password_hash) "
        "SELECT %s, id, %s, %s, %s FROM device_models WHERE code = %s RETURNING id",
        (serial, site_id, installed_at, password_hash, model_code),
    ).fetchone()
    if row is None:
        raise NotFound(f"device model {model_code}")
    return Device(row[0], serial, model_code, site_id, installed_at)


def devices(conn: psycopg.Connection, ids: Iterable[int] | None = None) -> list[Device]:
    query = (
        "SELECT d.id, d.serial, m.code, d.site_id, d.installed_at FROM devices d "
        "JOIN device_models m ON m.id = d.model_id"
    )
    if ids is None:
        rows = conn.execute(query + " ORDER BY d.id").fetchall()
    else:
        rows = conn.execute(query + " WHERE d.id = ANY(%s) ORDER BY d.id", (list(ids),)).fetchall()
    return [Device(*r) for r in rows]


def device_by_serial(conn: psycopg.Connection, serial: str) -> Device:
    row = conn.execute(
        "SELECT d.id, d.serial, m.code, d.site_id, d.installed_at FROM devices d "
        "JOIN device_models m ON m.id = d.model_id WHERE d.serial = %s",
        (serial,),
    ).fetchone()
    if row is None:
        raise NotFound(f"device {serial}")
    return Device(*row)


# ---------------------------------------------------------------- technicians and stock


def create_technician(
    conn: psycopg.Connection, name: str, skills: Iterable[str], home: GeoPoint, shift: Shift,
    region: str = "default", timezone: str = "UTC",
) -> Technician:
    (tid,) = conn.execute(
        "INSERT INTO technicians (name, skills, home_lat, home_lon, region, timezone, shift_start, "
        "shift_end, break_start, break_end, break_duration_s) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (name, sorted(set(skills)), home.lat, home.lon, region, timezone, shift.start, shift.end,
         shift.break_start, shift.break_end, shift.break_duration_s),
    ).fetchone()
    return Technician(tid, name, frozenset(skills), home, shift, region)


def technicians(conn: psycopg.Connection, active_only: bool = True) -> list[Technician]:
    rows = conn.execute(
        "SELECT id, name, skills, home_lat, home_lon, shift_start, shift_end, break_start, break_end, "
        "break_duration_s, region FROM technicians WHERE active OR NOT %s ORDER BY id",
        (active_only,),
    ).fetchall()
    return [
        Technician(r[0], r[1], frozenset(r[2]), GeoPoint(r[3], r[4]), Shift(r[5], r[6], r[7], r[8], r[9]), r[10])
        for r in rows
    ]


def create_stock_location(
    conn: psycopg.Connection, kind: StockKind, name: str, location: GeoPoint | None = None,
    technician_id: int | None = None,
) -> StockLocation:
    (lid,) = conn.execute(
        "INSERT INTO stock_locations (kind, name, lat, lon, technician_id) VALUES (%s, %s, %s, %s, %s) "
        "RETURNING id",
        (kind.value, name, location.lat if location else None, location.lon if location else None,
         technician_id),
    ).fetchone()
    return StockLocation(lid, kind, name, location, technician_id)


def set_stock(
    conn: psycopg.Connection, location_id: int, part_id: int, quantity: int, min_quantity: int = 0
) -> None:
    if quantity < 0:
        raise ValueError("quantity: must not be negative")
    conn.execute(
        "INSERT INTO stock (location_id, part_id, quantity, min_quantity) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (location_id, part_id) DO UPDATE SET quantity = excluded.quantity, "
        "min_quantity = excluded.min_quantity",
        (location_id, part_id, quantity, min_quantity),
    )
