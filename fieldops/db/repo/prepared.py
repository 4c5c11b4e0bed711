"""What a database holds already, so ``fieldops up`` skips the preparation steps that are done:
devices (seed data), telemetry (history) and an active failure model; and the events of the
demo's own shutdown, settled before the next run."""

from __future__ import annotations

from datetime import datetime

import psycopg


def has_devices(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM devices)").fetchone()[0])


def has_telemetry(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM telemetry)").fetchone()[0])


def has_active_model(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM model_registry WHERE active)").fetchone()[0])


def settle_unhandled_events(conn: psycopg.Connection, code: str, now: datetime) -> int:
    """Mark the unhandled device events with ``code`` handled at ``now``; returns how many."""
    return conn.execute("UPDATE device_events SET handled_at = %s WHERE handled_at IS NULL AND code = %s",
                        (now, code)).rowcount
