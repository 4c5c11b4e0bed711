"""SQL of the simulators: ground truth in the ``simulator`` schema and historical fault events.

The ``simulator`` schema is for evaluation only; prediction code must never read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class FailureTruth:
    device_id: int
    mode: str
    fault_code: str
    onset_at: datetime
    failed_at: datetime
    repaired_at: datetime | None
    source: str


@dataclass(frozen=True, slots=True)
class RepairTruth:
    device_id: int
    ts: datetime
    finding: str | None
    parts: dict[str, int]
    preventive: bool
    restored_mode: str | None
    source: str
    job_id: int | None = None


def record_failures(conn: psycopg.Connection, rows: Iterable[FailureTruth]) -> int:
    """Insert failures (an existing (device, failed_at) gets its repair time updated)."""
    rows = list(rows)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO simulator.failures (device_id, mode, fault_code, onset_at, failed_at, "
            "repaired_at, source) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id, failed_at) DO UPDATE SET repaired_at = "
            "coalesce(excluded.repaired_at, simulator.failures.repaired_at)",
            [(r.device_id, r.mode, r.fault_code, r.onset_at, r.failed_at, r.repaired_at, r.source)
             for r in rows],
        )
    return len(rows)


def mark_repaired(conn: psycopg.Connection, device_id: int, mode: str, ts: datetime) -> None:
    conn.execute(
        "UPDATE simulator.failures SET repaired_at = %s WHERE device_id = %s AND mode = %s "
        "AND repaired_at IS NULL AND failed_at <= %s",
        (ts, device_id, mode, ts),
    )


def record_repairs(conn: psycopg.Connection, rows: Iterable[RepairTruth]) -> int:
    rows = list(rows)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO simulator.repairs (device_id, ts, job_id, finding, parts, preventive, "
            "restored_mode, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(r.device_id, r.ts, r.job_id, r.finding, json.dumps(r.parts), r.preventive,
              r.restored_mode, r.source) for r in rows],
        )
    return len(rows)


def failures(conn: psycopg.Connection, device_ids: Sequence[int] | None = None) -> list[FailureTruth]:
    rows = conn.execute(
        "SELECT device_id, mode, fault_code, onset_at, failed_at, repaired_at, source "
        "FROM simulator.failures WHERE %s::int[] IS NULL OR device_id = ANY(%s::int[]) "
        "ORDER BY failed_at, device_id",
        (list(device_ids) if device_ids is not None else None,) * 2,
    ).fetchall()
    return [FailureTruth(*r) for r in rows]


def repairs(conn: psycopg.Connection, device_ids: Sequence[int] | None = None) -> list[RepairTruth]:
    rows = conn.execute(
        "SELECT device_id, ts, finding, parts, preventive, restored_mode, source, job_id "
        "FROM simulator.repairs WHERE %s::int[] IS NULL OR device_id = ANY(%s::int[]) ORDER BY ts",
        (list(device_ids) if device_ids is not None else None,) * 2,
    ).fetchall()
    return [RepairTruth(*r) for r in rows]


def applied_job_ids(conn: psycopg.Connection) -> set[int]:
    """Jobs the live fleet has already applied to its devices."""
    rows = conn.execute("SELECT job_id FROM simulator.repairs WHERE job_id IS NOT NULL").fetchall()
    return {r[0] for r in rows}


@dataclass(frozen=True, slots=True)
class FaultEvent:
    device_id: int
    ts: datetime
    code: str
    mode: str
    handled_at: datetime | None


def record_fault_events(conn: psycopg.Connection, rows: Iterable[FaultEvent]) -> int:
    """Historical fault events (severity 'fault', the mode in the payload); repeats are ignored."""
    rows = list(rows)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO device_events (device_id, ts, received_at, code, severity, payload, handled_at) "
            "VALUES (%s, %s, %s, %s, 'fault', %s, %s) ON CONFLICT (device_id, ts, code) DO NOTHING",
            [(r.device_id, r.ts, r.ts, r.code, json.dumps({"mode": r.mode, "source": "simulator"}),
              r.handled_at) for r in rows],
        )
    return len(rows)


def set_device_status(conn: psycopg.Connection, device_id: int, status: str, ts: datetime) -> None:
    conn.execute(
        "UPDATE devices SET status = %s, status_changed_at = %s, last_seen = greatest(last_seen, %s) "
        "WHERE id = %s",
        (status, ts, ts, device_id),
    )


@dataclass(frozen=True, slots=True)
class CompletedJob:
    """A completed job as the simulated device experiences it: what was found and what was fitted."""

    job_id: int
    device_id: int
    preventive: bool
    completed_at: datetime
    finding_mode: str | None
    parts: dict[str, int]


def completed_jobs(conn: psycopg.Connection, device_ids: Sequence[int], exclude: set[int],
                   since: datetime) -> list[CompletedJob]:
    """Completed jobs of these devices finished at or after ``since`` and not in ``exclude``."""
    rows = conn.execute(
        "SELECT j.id, j.device_id, j.type = 'preventive', j.completed_at, "
        "CASE WHEN j.finding = 'fault_confirmed' THEN j.finding_mode END, "
        "coalesce((SELECT jsonb_object_agg(p.sku, u.qty) FROM (SELECT part_id, sum(quantity) AS qty "
        "FROM job_parts_used WHERE job_id = j.id GROUP BY part_id) u JOIN parts p ON p.id = u.part_id), "
        "'{}'::jsonb) "
        "FROM jobs j WHERE j.status = 'completed' AND j.device_id = ANY(%s) AND j.completed_at >= %s "
        "ORDER BY j.completed_at, j.id",
        (list(device_ids), since),
    ).fetchall()
    return [CompletedJob(r[0], r[1], r[2], r[3], r[4], {k: int(v) for k, v in r[5].items()})
            for r in rows if r[0] not in exclude]


def save_device_state(conn: psycopg.Connection, rows: Iterable[tuple[int, datetime, str | None, dict]]) -> None:
    """Upsert (device_id, at, failed_mode, health by mode) rows of the live fleet."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO simulator.device_state (device_id, at, failed_mode, health) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (device_id) DO UPDATE SET at = excluded.at, failed_mode = excluded.failed_mode, "
            "health = excluded.health",
            [(d, at, mode, json.dumps(h)) for d, at, mode, h in rows],
        )


def device_state(conn: psycopg.Connection, device_id: int) -> tuple[str | None, dict[str, float]]:
    """(failed mode, health by mode) of a device: the live state if the fleet runs, else open failures."""
    row = conn.execute(
        "SELECT failed_mode, health FROM simulator.device_state WHERE device_id = %s", (device_id,)
    ).fetchone()
    if row is not None:
        return row[0], {k: float(v) for k, v in row[1].items()}
    open_row = conn.execute(
        "SELECT mode FROM simulator.failures WHERE device_id = %s AND repaired_at IS NULL "
        "ORDER BY failed_at DESC LIMIT 1", (device_id,)
    ).fetchone()
    return (open_row[0] if open_row else None), {}


def record_position(conn: psycopg.Connection, technician_id: int, lat: float, lon: float, at: datetime) -> None:
    conn.execute(
        "UPDATE technicians SET last_lat = %s, last_lon = %s, last_position_at = %s WHERE id = %s",
        (lat, lon, at, technician_id),
    )


def open_failures(conn: psycopg.Connection, device_ids: Sequence[int]) -> dict[int, tuple[str, datetime]]:
    """Device -> (mode, failed_at) of its latest failure not yet repaired."""
    rows = conn.execute(
        "SELECT DISTINCT ON (device_id) device_id, mode, failed_at FROM simulator.failures "
        "WHERE device_id = ANY(%s) AND repaired_at IS NULL ORDER BY device_id, failed_at DESC",
        (list(device_ids),),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}
