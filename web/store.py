"""SQL owned by the web layer: users, login attempts, tracking tokens, idempotency keys, positions.

Functions take a connection and run in the caller's transaction; no Flask here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from fieldops import events
from fieldops.service.errors import ServiceError
from web.security import hash_password, token_digest

log = logging.getLogger(__name__)

ROLES = ("admin", "dispatcher", "technician")
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_MAX_FAILURES = 5


class AccountExists(ServiceError):
    """The name, or the technician, has an account already (usernames and technicians have one each)."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str
    technician_id: int | None
    password_hash: str = ""
    active: bool = True


def create_user(
    conn: psycopg.Connection, username: str, password: str, role: str, technician_id: int | None = None,
    *, password_hash: str | None = None,
) -> User:
    """Add an account; ``password_hash`` (an encoded scrypt hash) skips hashing ``password``.

    Raises AccountExists when the name or the technician has an account already (the caller's
    transaction is then aborted).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    try:
        row = conn.execute(
            "INSERT INTO users (username, password_hash, role, technician_id) VALUES (%s, %s, %s, %s) "
            "RETURNING id, username, role, technician_id, password_hash, active",
            (username, password_hash or hash_password(password), role, technician_id),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "users_technician_id_key":
            raise AccountExists("technician_id", f"technician {technician_id} already has an account "
                                "(one account per technician)") from exc
        if exc.diag.constraint_name == "users_username_key":
            raise AccountExists("username", f"an account named {username!r} already exists") from exc
        raise
    return User(*row)


def user_by_name(conn: psycopg.Connection, username: str) -> User | None:
    row = conn.execute("SELECT id, username, role, technician_id, password_hash, active FROM users WHERE username = %s", (username,)).fetchone()
    return User(*row) if row else None


def user_by_technician(conn: psycopg.Connection, technician_id: int) -> User | None:
    """The account of a technician (there is at most one)."""
    row = conn.execute("SELECT id, username, role, technician_id, password_hash, active FROM users "
                       "WHERE technician_id = %s", (technician_id,)).fetchone()
    return User(*row) if row else None


def user_by_id(conn: psycopg.Connection, user_id: int) -> User | None:
    row = conn.execute("SELECT id, username, role, technician_id, password_hash, active FROM users WHERE id = %s", (user_id,)).fetchone()
    return User(*row) if row else None


def recent_failures(conn: psycopg.Connection, username: str, address: str, now: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) FROM login_attempts WHERE username = %s AND address = %s AND attempted_at > %s",
        (username, address, now - LOGIN_WINDOW),
    ).fetchone()
    return int(row[0])


def record_failure(conn: psycopg.Connection, username: str, address: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO login_attempts (username, address, attempted_at) VALUES (%s, %s, %s)",
        (username, address, now),
    )
    conn.execute("DELETE FROM login_attempts WHERE attempted_at < %s", (now - LOGIN_WINDOW,))


def clear_failures(conn: psycopg.Connection, username: str, address: str) -> None:
    conn.execute("DELETE FROM login_attempts WHERE username = %s AND address = %s", (username, address))


def store_tracking_token(conn: psycopg.Connection, token: str, job_id: int, expires_at: datetime) -> None:
    conn.execute(
        "INSERT INTO tracking_tokens (token_hash, job_id, expires_at) VALUES (%s, %s, %s)",
        (token_digest(token), job_id, expires_at),
    )


def job_for_token(conn: psycopg.Connection, token: str, now: datetime) -> int | None:
    """The job a token opens, or None when it is unknown or expired."""
    row = conn.execute(
        "SELECT job_id FROM tracking_tokens WHERE token_hash = %s AND expires_at > %s",
        (token_digest(token), now),
    ).fetchone()
    return int(row[0]) if row else None


def claim_idempotency_key(
    conn: psycopg.Connection, user_id: int, key: str, path: str
) -> tuple[int, Any] | None:
    """Reserve ``key`` in this transaction; return the stored (status, body) if it was processed.

    A concurrent request with the same key waits on the row lock until the first one commits.
    """
    inserted = conn.execute(
        "INSERT INTO idempotency_keys (user_id, key, request_path, status_code, response) "
        "VALUES (%s, %s, %s, 0, '{}') ON CONFLICT DO NOTHING RETURNING key",
        (user_id, key, path),
    ).fetchone()
    if inserted:
        return None
    row = conn.execute(
        "SELECT status_code, response FROM idempotency_keys WHERE user_id = %s AND key = %s",
        (user_id, key),
    ).fetchone()
    return int(row[0]), row[1]


def finish_idempotency_key(conn: psycopg.Connection, user_id: int, key: str, status: int, body_json: str) -> None:
    """Keep the answer to ``key``: its status and its body, already encoded as the client got it."""
    conn.execute(
        "UPDATE idempotency_keys SET status_code = %s, response = %s WHERE user_id = %s AND key = %s",
        (status, body_json, user_id, key),
    )


def record_position(
    conn: psycopg.Connection, technician_id: int, lat: float, lon: float, at: datetime
) -> None:
    """Store a technician's latest position and publish it."""
    conn.execute(
        "UPDATE technicians SET last_lat = %s, last_lon = %s, last_position_at = %s WHERE id = %s",
        (lat, lon, at, technician_id),
    )
    events.publish(
        conn, events.TECHNICIAN_POSITION,
        {"technician_id": technician_id, "lat": lat, "lon": lon, "at": at.isoformat()},
        technician_id=technician_id,
    )


def technician_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, name, skills, region, active, last_lat, last_lon, last_position_at, home_lat, home_lon "
        "FROM technicians ORDER BY id"
    ).fetchall()
    keys = ("id", "name", "skills", "region", "active", "lat", "lon", "position_at", "home_lat", "home_lon")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def device_rows(conn: psycopg.Connection, device_id: int | None = None) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT d.id, d.serial, m.code, d.site_id, s.name, s.address, s.lat, s.lon, d.status, "
        "d.last_seen, d.run_hours FROM devices d JOIN device_models m ON m.id = d.model_id "
        "JOIN sites s ON s.id = d.site_id WHERE (%s::int IS NULL OR d.id = %s::int) ORDER BY d.id",
        (device_id, device_id),
    ).fetchall()
    keys = ("id", "serial", "model", "site_id", "site", "address", "lat", "lon", "status", "last_seen",
            "run_hours")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def device_row(conn: psycopg.Connection, device_id: int) -> dict[str, Any] | None:
    rows = device_rows(conn, device_id)
    return rows[0] if rows else None


def device_metrics(conn: psycopg.Connection, device_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT mm.metric_index, mm.name, mm.unit FROM model_metrics mm JOIN devices d "
        "ON d.model_id = mm.model_id WHERE d.id = %s ORDER BY mm.metric_index",
        (device_id,),
    ).fetchall()
    return [{"index": r[0], "name": r[1], "unit": r[2]} for r in rows]


def device_events(conn: psycopg.Connection, device_id: int, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT ts, code, severity, payload FROM device_events WHERE device_id = %s "
        "ORDER BY ts DESC LIMIT %s",
        (device_id, limit),
    ).fetchall()
    return [{"ts": r[0], "code": r[1], "severity": r[2], "payload": r[3]} for r in rows]


def parts_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT p.id, p.sku, p.name, p.unit_cost, coalesce(sum(s.quantity), 0), coalesce(sum(s.reserved), 0) "
        "FROM parts p LEFT JOIN stock s ON s.part_id = p.id GROUP BY p.id ORDER BY p.sku"
    ).fetchall()
    return [{"id": r[0], "sku": r[1], "name": r[2], "unit_cost": float(r[3]), "quantity": int(r[4]),
             "reserved": int(r[5])} for r in rows]


_JOB_VIEW = (
    "SELECT j.id, j.status, j.priority, j.type, j.technician_id, t.name, j.planned_arrival, j.eta, "
    "j.estimated_duration_s, j.response_due, j.resolution_due, j.at_risk, j.version, j.explanation, "
    "j.notes, j.failure_mode, j.device_id, s.id, s.name, s.address, s.lat, s.lon, j.created_at, "
    "j.arrived_at, j.completed_at, "
    "(SELECT coalesce(json_agg(json_build_object('start', w.start_at, 'end', w.end_at) "
    "ORDER BY w.start_at), '[]') FROM job_windows w WHERE w.job_id = j.id), "
    # parts reserved for the job at a warehouse: the technician collects them on the way
    "(SELECT coalesce(json_agg(json_build_object('location_id', l.id, 'location', l.name, 'lat', l.lat, "
    "'lon', l.lon, 'sku', p.sku, 'quantity', r.quantity) ORDER BY l.id, p.sku), '[]') "
    "FROM stock_reservations r JOIN stock_locations l ON l.id = r.location_id AND l.kind = 'warehouse' "
    "JOIN parts p ON p.id = r.part_id WHERE r.job_id = j.id) "
    "FROM jobs j JOIN sites s ON s.id = j.site_id LEFT JOIN technicians t ON t.id = j.technician_id "
)
_JOB_KEYS = ("id", "status", "priority", "type", "technician_id", "technician", "planned_arrival", "eta",
             "estimated_duration_s", "response_due", "resolution_due", "at_risk", "version",
             "explanation", "notes", "failure_mode", "device_id", "site_id", "site", "address", "lat",
             "lon", "created_at", "arrived_at", "completed_at", "windows", "pickups")


def _job_dicts(rows: list[tuple]) -> list[dict[str, Any]]:
    return [dict(zip(_JOB_KEYS, r, strict=True)) for r in rows]


def job_view(conn: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
    rows = conn.execute(_JOB_VIEW + "WHERE j.id = %s", (job_id,)).fetchall()
    return _job_dicts(rows)[0] if rows else None


def job_technician(conn: psycopg.Connection, job_id: int) -> int | None:
    row = conn.execute("SELECT technician_id FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None


def jobs_view(
    conn: psycopg.Connection,
    *,
    technician_id: int | None = None,
    statuses: list[str] | None = None,
    day_start: datetime | None = None,
    day_end: datetime | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Jobs with their site, newest plan order first by planned arrival; all filters optional."""
    rows = conn.execute(
        _JOB_VIEW
        + "WHERE (%(t)s::int IS NULL OR j.technician_id = %(t)s::int) "
        "AND (%(st)s::text[] IS NULL OR j.status = ANY(%(st)s::text[])) "
        "AND (%(d0)s::timestamptz IS NULL OR j.planned_arrival IS NULL OR j.planned_arrival >= %(d0)s) "
        "AND (%(d1)s::timestamptz IS NULL OR j.planned_arrival IS NULL OR j.planned_arrival < %(d1)s) "
        "ORDER BY j.planned_arrival NULLS LAST, j.priority, j.id LIMIT %(lim)s",
        {"t": technician_id, "st": statuses, "d0": day_start, "d1": day_end, "lim": limit},
    ).fetchall()
    return _job_dicts(rows)


def technician_exists(conn: psycopg.Connection, technician_id: int) -> bool:
    return conn.execute("SELECT 1 FROM technicians WHERE id = %s", (technician_id,)).fetchone() is not None


def stock_location_exists(conn: psycopg.Connection, location_id: int) -> bool:
    return conn.execute("SELECT 1 FROM stock_locations WHERE id = %s", (location_id,)).fetchone() is not None


def technician_first_name(conn: psycopg.Connection, technician_id: int | None) -> str | None:
    if technician_id is None:
        return None
    row = conn.execute("SELECT name FROM technicians WHERE id = %s", (technician_id,)).fetchone()
    return row[0].split()[0] if row and row[0] else None


def has_feedback(conn: psycopg.Connection, job_id: int) -> bool:
    row = conn.execute("SELECT 1 FROM feedback WHERE job_id = %s", (job_id,)).fetchone()
    return row is not None


def missing_skills(conn: psycopg.Connection, job_id: int, technician_id: int) -> list[str]:
    """Skills the job requires that the technician lacks (empty when the technician is unknown)."""
    row = conn.execute(
        "SELECT array(SELECT unnest(j.required_skills) EXCEPT SELECT unnest(t.skills)) "
        "FROM jobs j, technicians t WHERE j.id = %s AND t.id = %s",
        (job_id, technician_id),
    ).fetchone()
    return sorted(row[0]) if row else []


def announce_plan_change(
    conn: psycopg.Connection, job_id: int, old_technician_id: int | None, new_technician_id: int | None,
    reason: str,
) -> None:
    """Tell both the old and the new technician that their plan changed."""
    ids = sorted({t for t in (old_technician_id, new_technician_id) if t is not None})
    events.publish(
        conn, events.PLAN_CHANGED,
        {"job_ids": [job_id], "technician_ids": ids, "reason": reason,
         "previous_technician_id": old_technician_id, "technician_id": new_technician_id},
        job_id=job_id,
    )


def active_plan(conn: psycopg.Connection) -> dict[str, Any]:
    """The active plan's stops per technician and its unassigned jobs with reasons."""
    head = conn.execute("SELECT id, created_at, trigger FROM plans WHERE active").fetchone()
    if head is None:
        return {"plan_id": None, "routes": {}, "unassigned": []}
    routes: dict[int, list[dict[str, Any]]] = {}
    for tid, seq, kind, job_id, arrival, start_at, departure, travel_s in conn.execute(
        "SELECT technician_id, sequence, kind, job_id, arrival, start_at, departure, travel_s "
        "FROM plan_visits WHERE plan_id = %s ORDER BY technician_id, sequence", (head[0],)
    ):
        routes.setdefault(tid, []).append({"sequence": seq, "kind": kind, "job_id": job_id, "arrival": arrival,
                                           "start": start_at, "departure": departure, "travel_s": travel_s})
    unassigned = [{"job_id": j, "reason": r} for j, r in conn.execute(
        "SELECT job_id, reason FROM plan_unassigned WHERE plan_id = %s ORDER BY job_id", (head[0],))]
    return {"plan_id": head[0], "created_at": head[1], "trigger": head[2], "routes": routes,
            "unassigned": unassigned}


_PREDICTION_KEYS = ("device_id", "scored_at", "model_version", "p_fail", "rul_h", "failure_mode",
                    "explanation", "job_id")


def prediction_history(conn: psycopg.Connection, device_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """A device's risk over time, newest first."""
    rows = conn.execute(
        "SELECT device_id, scored_at, model_version, p_fail, rul_h, failure_mode, explanation, job_id "
        "FROM predictions WHERE device_id = %s ORDER BY scored_at DESC LIMIT %s",
        (device_id, limit),
    ).fetchall()
    return [dict(zip(_PREDICTION_KEYS, r, strict=True)) for r in rows]


def latest_predictions(conn: psycopg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest prediction of each device, riskiest first."""
    rows = conn.execute(
        "SELECT * FROM (SELECT DISTINCT ON (device_id) device_id, scored_at, model_version, p_fail, rul_h, "
        "failure_mode, explanation, job_id FROM predictions ORDER BY device_id, scored_at DESC) latest "
        "ORDER BY p_fail DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [dict(zip(_PREDICTION_KEYS, r, strict=True)) for r in rows]
