"""What a database holds already, so ``fieldops up`` skips the preparation steps that are done:
devices (seed data), telemetry (history) and an active failure model."""

from __future__ import annotations

import psycopg


def has_devices(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM devices)").fetchone()[0])


def has_telemetry(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM telemetry)").fetchone()[0])


def has_active_model(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM model_registry WHERE active)").fetchone()[0])
