"""Reads what prediction needs from the database into a :class:`~predict.features.Grid`.

Hourly means come from the rollup ``telemetry_hourly`` (one row per device and hour with count and
sum per metric slot), fetched in one query per time range. Failures are fault events and
completed jobs whose finding confirmed a fault; repairs are completed jobs. Times on the grid are
hours since 1970-01-01 UTC; step ``j`` covers hour bucket ``start + j`` and is timed at its end.
Nothing here reads the simulator's schema.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql

from fieldops.domain import MAX_METRICS
from predict.features import Failure, Grid

log = logging.getLogger(__name__)

COUNT_SEVERITIES = ("error", "warning", "fault")  # event count channels, in this order


def hours(ts: datetime) -> float:
    return ts.timestamp() / 3600.0


def from_hours(h: float) -> datetime:
    return datetime.fromtimestamp(h * 3600.0, UTC)


@dataclass(slots=True)
class Fleet:
    """Devices with their model group, contract, and the failures and repairs known for them."""

    grid: Grid
    failures: list[Failure]
    repairs: list[list[float]]
    contracts: list[str]
    model_ids: list[int]


def _devices(conn: psycopg.Connection, device_ids: list[int] | None) -> list[tuple]:
    query = (
        "SELECT d.id, d.model_id, d.installed_at, c.contract FROM devices d "
        "JOIN sites s ON s.id = d.site_id JOIN customers c ON c.id = s.customer_id "
    )
    if device_ids is None:
        return conn.execute(query + "ORDER BY d.id").fetchall()
    return conn.execute(query + "WHERE d.id = ANY(%s) ORDER BY d.id", (device_ids,)).fetchall()


def slot_names(conn: psycopg.Connection) -> tuple[list[int], list[list[str]]]:
    """Model ids in group order and, per group, the metric name of each slot ('' if unused)."""
    models = [r[0] for r in conn.execute("SELECT id FROM device_models ORDER BY id").fetchall()]
    names = [[""] * MAX_METRICS for _ in models]
    index = {m: i for i, m in enumerate(models)}
    for model_id, slot, name in conn.execute(
        "SELECT model_id, metric_index, name FROM model_metrics ORDER BY model_id, metric_index"
    ).fetchall():
        names[index[model_id]][slot] = name
    return models, names


def used_slots(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(metric_index) + 1, 1) FROM model_metrics").fetchone()
    return int(row[0])


def _has_jobs(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone()
    return bool(row[0])


def load(conn: psycopg.Connection, start: datetime, end: datetime,
         device_ids: list[int] | None = None, n_slots: int | None = None) -> Fleet:
    """The grid of hours ``[start, end)`` for the given devices (all when None)."""
    n_slots = n_slots or used_slots(conn)
    devs = _devices(conn, device_ids)
    models, names = slot_names(conn)
    group_of = {m: i for i, m in enumerate(models)}
    ids = np.array([r[0] for r in devs], dtype=np.int64)
    pos = {int(d): i for i, d in enumerate(ids)}
    h0 = int(np.floor(hours(start)))
    h1 = int(np.ceil(hours(end)))
    t = max(h1 - h0, 1)
    values = np.full((len(ids), t, n_slots), np.nan)
    counts = np.zeros((len(ids), t, len(COUNT_SEVERITIES)))
    # One row per device: its hours and hourly means packed as big-endian binary (no Python
    # object per value); an hour without readings of a slot is NaN.
    packed = sql.SQL(" || ").join(
        sql.SQL("float8send(coalesce({s} / nullif({n}, 0), 'NaN'))").format(
            s=sql.Identifier(f"s{i}"), n=sql.Identifier(f"n{i}"))
        for i in range(1, n_slots + 1)
    )
    query = sql.SQL(
        "SELECT device_id, string_agg(int8send(floor(extract(epoch FROM bucket) / 3600)::int8), ''::bytea "
        "ORDER BY bucket), string_agg({}, ''::bytea ORDER BY bucket) "
        "FROM telemetry_hourly WHERE bucket >= %s AND bucket < %s AND device_id = ANY(%s) "
        "GROUP BY device_id"
    ).format(packed)
    with conn.cursor(binary=True) as cur:
        cur.execute(query, (start, end, ids.tolist()))
        for device_id, hour_bytes, value_bytes in cur:
            hour_idx = np.frombuffer(hour_bytes, dtype=">i8").astype(np.int64) - h0
            ok = (hour_idx >= 0) & (hour_idx < t)
            vals = np.frombuffer(value_bytes, dtype=">f8").reshape(len(hour_idx), n_slots)
            values[pos[device_id], hour_idx[ok]] = vals[ok]
    grid_time = np.broadcast_to(np.arange(h0 + 1, h0 + t + 1, dtype=np.float64), (len(ids), t)).copy()
    installed = np.array([hours(r[2]) for r in devs], dtype=np.float64)
    grid_time[grid_time <= installed[:, None]] = np.nan
    values[np.isnan(grid_time)] = np.nan

    failures: list[Failure] = []
    fault_times: dict[int, list[float]] = {}
    for device_id, ts, severity, code, mode in conn.execute(
        "SELECT device_id, ts, severity, code, coalesce(payload->>'failure_mode', payload->>'mode', code) "
        "FROM device_events WHERE severity = ANY(%s) AND device_id = ANY(%s) AND ts < %s",
        (list(COUNT_SEVERITIES), ids.tolist(), end),
    ).fetchall():
        i = pos[device_id]
        h = hours(ts)
        if h0 <= h < h1:
            counts[i, int(h) - h0, COUNT_SEVERITIES.index(severity)] += 1
        if severity == "fault":
            failures.append(Failure(i, h, mode or code))
            fault_times.setdefault(i, []).append(h)
    repairs: list[list[float]] = [[] for _ in ids]
    if _has_jobs(conn):
        confirmed: list[tuple[int, float, str]] = []
        for device_id, done, finding, mode in conn.execute(
            "SELECT device_id, completed_at, finding, coalesce(finding_mode, failure_mode, '') FROM jobs "
            "WHERE status = 'completed' AND completed_at IS NOT NULL AND completed_at < %s "
            "AND device_id = ANY(%s) ORDER BY completed_at",
            (end, ids.tolist()),
        ).fetchall():
            i = pos[device_id]
            if finding == "fault_confirmed":
                confirmed.append((i, hours(done), mode))
            repairs[i].append(hours(done))
        failures += _confirmed_without_event(confirmed, fault_times)
    per_dev = [list(r) for r in repairs]
    for f in failures:
        per_dev[f.device_index].append(f.time)
    resets = [np.unique(np.array(r, dtype=np.float64)) for r in per_dev]
    grid = Grid(
        device_ids=ids, values=values, time=grid_time, counts=counts, resets=resets,
        installed=installed, group=np.array([group_of[r[1]] for r in devs], dtype=np.int64),
        slot_names=[n[:n_slots] for n in names],
    )
    return Fleet(grid, failures, repairs, [r[3] for r in devs], [r[1] for r in devs])


def _confirmed_without_event(confirmed: list[tuple[int, float, str]],
                             fault_times: dict[int, list[float]]) -> list[Failure]:
    """Failures found by technicians (e.g. on proactive jobs) that no fault event reported: a
    confirming job answers a fault event when one lies between the device's previous confirming
    job and this one."""
    out = []
    for i, t, mode in confirmed:
        before = [c for j, c, _ in confirmed if j == i and c < t]  # the previous confirmed fault
        prev = max(before) if before else -np.inf
        if not any(prev < f <= t for f in fault_times.get(i, [])):
            out.append(Failure(i, t, mode))
    return out


def time_range(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
    """First and last hour bucket in the rollup, or None when there is no telemetry."""
    row = conn.execute("SELECT min(bucket), max(bucket) FROM telemetry_hourly").fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1] + timedelta(hours=1)


def active_device_ids(conn: psycopg.Connection, since: datetime) -> list[int]:
    """Devices that reported since ``since``."""
    rows = conn.execute(
        "SELECT DISTINCT device_id FROM telemetry_hourly WHERE bucket >= %s ORDER BY 1", (since,)
    ).fetchall()
    return [r[0] for r in rows]
