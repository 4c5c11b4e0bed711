"""Small, named test data shared by the test modules. Each function writes rows and returns them."""

from __future__ import annotations

from datetime import UTC, datetime, time

import psycopg

from fieldops.db.repo import catalog
from fieldops.domain import (
    Device,
    DeviceModel,
    FailureMode,
    GeoPoint,
    Metric,
    PartQuantity,
    Shift,
    Site,
    Technician,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday

PUMP = DeviceModel(
    code="pump",
    name="Test pump",
    metrics=(
        Metric(0, "temp_c", "degC", -40.0, 150.0),
        Metric(1, "vibration_mm_s", "mm/s", 0.0, 50.0),
        Metric(2, "current_a", "A", 0.0, 100.0),
    ),
    failure_modes=(
        FailureMode("bearing_wear", "Bearing wear", "mechanical", 5400, (PartQuantity("BRG-1", 1),)),
        FailureMode("motor_fault", "Motor fault", "electrical", 7200, (PartQuantity("MTR-1", 1),)),
    ),
)


def pump_model(conn: psycopg.Connection) -> DeviceModel:
    catalog.upsert_part(conn, "BRG-1", "Bearing", 40.0)
    catalog.upsert_part(conn, "MTR-1", "Motor", 900.0)
    catalog.upsert_device_model(conn, PUMP)
    return catalog.device_models(conn)["pump"]


def site(conn: psycopg.Connection, name: str = "Plant A", location: GeoPoint = GeoPoint(48.137, 11.575),
         contract: str = "standard") -> Site:
    customer = catalog.create_customer(conn, f"{name} GmbH", contract)
    return catalog.create_site(conn, customer.id, name, f"{name} street 1, Munich", location)


def device(conn: psycopg.Connection, serial: str = "pump-0001", site_id: int | None = None,
           installed_at: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> Device:
    pump_model(conn) if "pump" not in catalog.device_models(conn) else None
    if site_id is None:
        site_id = site(conn).id
    return catalog.create_device(conn, serial, "pump", site_id, installed_at)


def technician(conn: psycopg.Connection, name: str = "Ada", skills: tuple[str, ...] = ("mechanical",),
               home: GeoPoint = GeoPoint(48.10, 11.50)) -> Technician:
    return catalog.create_technician(
        conn, name, skills, home,
        Shift(time(8), time(17), time(12), time(13, 30), 1800),
    )
