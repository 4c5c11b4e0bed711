"""Reads what prediction needs from the database into a :class:`~predict.features.Grid`.

Hourly means come from the rollup ``telemetry_hourly`` (one row per device and hour with count and
sum per metric slot), fetched in one query per time range, with a flag per slot whose readings
did not vary within the hour (at least two, all equal: a stuck or saturated sensor). Failures are
fault events and completed jobs whose finding confirmed a fault; repairs are completed jobs. Times
on the grid are hours since 1970-01-01 UTC; step ``j`` covers hour bucket ``start + j`` and is
timed at its end. Nothing here reads the simulator's schema.
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


def _read_rollup(conn: psycopg.Connection, ids: list[int], pos: dict[int, int], start: datetime,
                 end: datetime, h0: int, values: np.ndarray, flat: np.ndarray) -> None:
    """Hourly means of the rollup in ``[start, end)`` into ``values[device, hour - h0, slot]``,
    and into ``flat[device, hour - h0]`` a bit per slot (``1 << slot``) whose readings in that
    hour were at least two and all equal."""
    t, n_slots = values.shape[1], values.shape[2]
    # One row per device: its hours and hourly means packed as big-endian binary (no Python
    # object per value), from one index range scan per device (rows come in bucket order: no sort
    # of the whole batch, which spilled to disk on full reads); an hour without readings of a slot
    # is NaN. JIT compilation costs more than this query runs, so it is off for the transaction.
    packed = sql.SQL(" || ").join(
        sql.SQL("float8send(coalesce({s} / nullif({n}, 0), 'NaN'))").format(
            s=sql.Identifier(f"s{i}"), n=sql.Identifier(f"n{i}"))
        for i in range(1, n_slots + 1)
    )
    flat_bits = sql.SQL(" + ").join(
        sql.SQL("CASE WHEN {n} > 1 AND {lo} = {hi} THEN {bit} ELSE 0 END").format(
            n=sql.Identifier(f"n{i}"), lo=sql.Identifier(f"lo{i}"), hi=sql.Identifier(f"hi{i}"),
            bit=sql.Literal(1 << (i - 1)))
        for i in range(1, n_slots + 1)
    )
    query = sql.SQL(
        "SELECT d.id, r.hours, r.vals, r.flat FROM unnest(%s::int[]) AS d(id) CROSS JOIN LATERAL "
        "(SELECT string_agg(int8send(floor(extract(epoch FROM bucket) / 3600)::int8), ''::bytea "
        "ORDER BY bucket) AS hours, string_agg({}, ''::bytea ORDER BY bucket) AS vals, "
        "string_agg(int2send(({})::int2), ''::bytea ORDER BY bucket) AS flat "
        "FROM telemetry_hourly WHERE device_id = d.id AND bucket >= %s AND bucket < %s) r "
        "WHERE r.hours IS NOT NULL"
    ).format(packed, flat_bits)
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT set_config('jit', 'off', true)")
        cur.execute(query, (ids, start, end))
        rows = cur.fetchall()
    if not rows:
        return
    # all devices' rows at once: their hours and values concatenated, each hour tagged with its device
    hour_idx = np.frombuffer(b"".join(r[1] for r in rows), dtype=">i8").astype(np.int64) - h0
    vals = np.frombuffer(b"".join(r[2] for r in rows), dtype=">f8").reshape(len(hour_idx), n_slots)
    per_device = np.fromiter((len(r[1]) // 8 for r in rows), dtype=np.int64, count=len(rows))
    device = np.repeat(np.fromiter((pos[r[0]] for r in rows), dtype=np.int64, count=len(rows)), per_device)
    bits = np.frombuffer(b"".join(r[3] for r in rows), dtype=">i2").astype(np.uint8)
    ok = (hour_idx >= 0) & (hour_idx < t)
    values[device[ok], hour_idx[ok]] = vals[ok]
    flat[device[ok], hour_idx[ok]] = bits[ok]


def _recent_resets(conn: psycopg.Connection, ids: list[int], pos: dict[int, int], since: datetime,
                   end: datetime, h0: int, counts: np.ndarray) -> dict[int, list[float]]:
    """Event counts in ``[since, end)`` into ``counts[device, hour - h0, severity]``; the fault
    events' and completed jobs' times there per device index (the resets)."""
    out: dict[int, list[float]] = {}
    for device_id, ts, severity in conn.execute(
        "SELECT device_id, ts, severity FROM device_events WHERE severity = ANY(%s) AND device_id = ANY(%s) "
        "AND ts >= %s AND ts < %s", (list(COUNT_SEVERITIES), ids, since, end),
    ).fetchall():
        i, h = pos[device_id], hours(ts)
        if 0 <= int(h) - h0 < counts.shape[1]:
            counts[i, int(h) - h0, COUNT_SEVERITIES.index(severity)] += 1
        if severity == "fault":
            out.setdefault(i, []).append(h)
    if _has_jobs(conn):
        for device_id, done in conn.execute(
            "SELECT device_id, completed_at FROM jobs WHERE status = 'completed' AND device_id = ANY(%s) "
            "AND completed_at >= %s AND completed_at < %s", (ids, since, end),
        ).fetchall():
            out.setdefault(pos[device_id], []).append(hours(done))
    return out


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
         device_ids: list[int] | None = None, n_slots: int | None = None,
         history: bool = True) -> Fleet:
    """The grid of hours ``[start, end)`` for the given devices (all when None).

    With ``history`` (training), every failure and repair before ``end`` is read, as labels need
    them. Without it (scoring), only what the features use: events and jobs inside the window and
    each device's last reset before it, so the queries stay bounded however long the history;
    the features are the same (a reset before the window only matters as the last one)."""
    first_hour = from_hours(np.floor(hours(start)))  # the grid's first step starts there
    return _load(conn, start, end, device_ids, n_slots, since=None if history else first_hour,
                 last_resets=not history)


def _load(conn: psycopg.Connection, start: datetime, end: datetime, device_ids: list[int] | None,
          n_slots: int | None, since: datetime | None, last_resets: bool) -> Fleet:
    """:func:`load` with events and jobs read from ``since`` (all when None) and, with
    ``last_resets``, each device's last reset before ``start``."""
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
    flat = np.zeros((len(ids), t), dtype=np.uint8)
    _read_rollup(conn, ids.tolist(), pos, start, end, h0, values, flat)
    grid_time = np.broadcast_to(np.arange(h0 + 1, h0 + t + 1, dtype=np.float64), (len(ids), t)).copy()
    installed = np.array([hours(r[2]) for r in devs], dtype=np.float64)
    grid_time[grid_time <= installed[:, None]] = np.nan
    values[np.isnan(grid_time)] = np.nan

    failures: list[Failure] = []
    fault_times: dict[int, list[float]] = {}
    for device_id, ts, severity, code, mode in conn.execute(
        "SELECT device_id, ts, severity, code, coalesce(payload->>'failure_mode', payload->>'mode', code) "
        "FROM device_events WHERE severity = ANY(%s) AND device_id = ANY(%s) AND ts < %s "
        "AND (%s::timestamptz IS NULL OR ts >= %s)",
        (list(COUNT_SEVERITIES), ids.tolist(), end, since, since),
    ).fetchall():
        i = pos[device_id]
        h = hours(ts)
        if h0 <= h < h1:
            counts[i, int(h) - h0, COUNT_SEVERITIES.index(severity)] += 1
        if severity == "fault":
            failures.append(Failure(i, h, mode or code))
            fault_times.setdefault(i, []).append(h)
    repairs: list[list[float]] = [[] for _ in ids]
    jobs = _has_jobs(conn)
    if jobs:
        confirmed: list[tuple[int, float, str]] = []
        for device_id, done, finding, mode in conn.execute(
            "SELECT device_id, completed_at, finding, coalesce(finding_mode, failure_mode, '') FROM jobs "
            "WHERE status = 'completed' AND completed_at IS NOT NULL AND completed_at < %s "
            "AND (%s::timestamptz IS NULL OR completed_at >= %s) "
            "AND device_id = ANY(%s) ORDER BY completed_at",
            (end, since, since, ids.tolist()),
        ).fetchall():
            i = pos[device_id]
            if finding == "fault_confirmed":
                confirmed.append((i, hours(done), mode))
            repairs[i].append(hours(done))
        failures += _confirmed_without_event(confirmed, fault_times)
    per_dev = [list(r) for r in repairs]
    for f in failures:
        per_dev[f.device_index].append(f.time)
    if last_resets:
        for device_id, ts in _last_resets_before(conn, ids.tolist(), start, jobs):
            per_dev[pos[device_id]].append(hours(ts))
    resets = [np.unique(np.array(r, dtype=np.float64)) for r in per_dev]
    grid = Grid(
        device_ids=ids, values=values, time=grid_time, counts=counts, resets=resets,
        installed=installed, group=np.array([group_of[r[1]] for r in devs], dtype=np.int64),
        slot_names=[n[:n_slots] for n in names], flat=flat,
    )
    return Fleet(grid, failures, repairs, [r[3] for r in devs], [r[1] for r in devs])


class Window:
    """The scorer's rolling copy of each device's last ``hours`` hours: after the first pass, a
    pass reads only the hours since the previous one (the last ``reread_h`` again, as the hour
    under way was still filling) with their events and completed jobs, and shifts the rest. The
    whole window is read again when the device set changes, time goes back, or ``full_every_h``
    hours have passed since the last full read (picking up readings that arrived later than
    ``reread_h``). Its fleets carry the resets the features need, not lists of failures and
    repairs."""

    def __init__(self, hours: int, n_slots: int, reread_h: int = 2, full_every_h: int = 24) -> None:
        self.hours = hours
        self.n_slots = n_slots
        self.reread_h = reread_h
        self.full_every_h = full_every_h
        self._fleet: Fleet | None = None
        self._ids: list[int] = []
        self._h0 = self._h1 = self._full_h1 = 0

    def fleet(self, conn: psycopg.Connection, now: datetime, device_ids: list[int]) -> Fleet:
        """The grid of the hours ``[now - hours, now)`` for ``device_ids`` (what :func:`load`
        without history returns)."""
        start = now - timedelta(hours=self.hours)
        h0, h1 = int(np.floor(hours(start))), int(np.ceil(hours(now)))
        old = self._fleet
        if (old is None or list(device_ids) != self._ids or h0 < self._h0 or h1 < self._h1
                or h1 - self._h1 >= h1 - h0 - self.reread_h or h1 - self._full_h1 >= self.full_every_h):
            fleet = load(conn, start, now, device_ids, n_slots=self.n_slots, history=False)
            self._full_h1 = h1
        else:
            fleet = self._advance(conn, old, start, now, h0, h1)
        self._fleet, self._ids, self._h0, self._h1 = fleet, list(device_ids), h0, h1
        return fleet

    def reported_since(self, since: datetime) -> np.ndarray:
        """Per device of the last fleet, whether it has a reading in an hour starting at or after
        ``since`` (what :func:`active_device_ids` asks of the rollup)."""
        values = self._fleet.grid.values
        first = max(int(np.ceil(hours(since))) - self._h0, 0)
        return ~np.isnan(values[:, first:]).all(axis=(1, 2))

    def _advance(self, conn: psycopg.Connection, old: Fleet, start: datetime, now: datetime,
                 h0: int, h1: int) -> Fleet:
        g, t = old.grid, h1 - h0
        re_from = max(h0, self._h1 - self.reread_h)
        keep_to = re_from - h0  # steps [0, keep_to) come from the previous window
        shift = h0 - self._h0
        values = np.full((len(self._ids), t, self.n_slots), np.nan)
        counts = np.zeros((len(self._ids), t, g.counts.shape[2]))
        flat = np.zeros((len(self._ids), t), dtype=np.uint8)
        values[:, :keep_to] = g.values[:, shift:shift + keep_to]
        counts[:, :keep_to] = g.counts[:, shift:shift + keep_to]
        if g.flat is not None:
            flat[:, :keep_to] = g.flat[:, shift:shift + keep_to]
        pos = {d: i for i, d in enumerate(self._ids)}
        _read_rollup(conn, self._ids, pos, max(from_hours(re_from), start), now, h0, values, flat)
        new = _recent_resets(conn, self._ids, pos, from_hours(re_from), now, h0, counts)
        grid_time = np.broadcast_to(np.arange(h0 + 1, h1 + 1, dtype=np.float64), (len(self._ids), t)).copy()
        grid_time[grid_time <= g.installed[:, None]] = np.nan
        values[np.isnan(grid_time)] = np.nan
        first = hours(start)
        before = np.arange(h0, h1) < first  # the rollup is read from ``start`` on
        values[:, before] = np.nan
        flat[:, before] = 0
        resets = list(g.resets)
        for i, times in new.items():  # only the last reset before the window matters
            both = np.unique(np.concatenate([resets[i], times]))
            resets[i] = np.concatenate([both[both < first][-1:], both[both >= first]])
        grid = Grid(device_ids=g.device_ids, values=values, time=grid_time, counts=counts, resets=resets,
                    installed=g.installed, group=g.group, slot_names=g.slot_names, flat=flat)
        return Fleet(grid, [], [[] for _ in self._ids], old.contracts, old.model_ids)


def _last_resets_before(conn: psycopg.Connection, ids: list[int], start: datetime,
                        jobs: bool) -> list[tuple[int, datetime]]:
    """Per device, its last fault event and its last completed job before ``start`` (one index
    probe each per device)."""
    events = sql.SQL(
        "SELECT d.id, e.ts FROM unnest(%(ids)s::int[]) AS d(id) CROSS JOIN LATERAL "
        "(SELECT ts FROM device_events WHERE device_id = d.id AND severity = 'fault' AND ts < %(start)s "
        "ORDER BY ts DESC LIMIT 1) e")
    completed = sql.SQL(
        " UNION ALL SELECT d.id, j.completed_at FROM unnest(%(ids)s::int[]) AS d(id) CROSS JOIN LATERAL "
        "(SELECT completed_at FROM jobs WHERE device_id = d.id AND status = 'completed' "
        "AND completed_at < %(start)s ORDER BY completed_at DESC LIMIT 1) j")
    query = events + completed if jobs else events
    return conn.execute(query, {"ids": ids, "start": start}).fetchall()


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


def readings_per_hour(conn: psycopg.Connection, start: datetime, end: datetime) -> float | None:
    """The data rate in ``[start, end)``: the median readings of a device in an hour of the rollup
    (what its hourly means average over); None without telemetry there."""
    row = conn.execute("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n) FROM telemetry_hourly "
                       "WHERE bucket >= %s AND bucket < %s", (start, end)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def device_ids(conn: psycopg.Connection) -> list[int]:
    """Every device, in id order."""
    return [r[0] for r in conn.execute("SELECT id FROM devices ORDER BY id").fetchall()]


def active_device_ids(conn: psycopg.Connection, since: datetime) -> list[int]:
    """Devices that reported since ``since``."""
    rows = conn.execute(
        "SELECT d.id FROM devices d WHERE EXISTS "
        "(SELECT 1 FROM telemetry_hourly h WHERE h.device_id = d.id AND h.bucket >= %s) ORDER BY 1", (since,)
    ).fetchall()
    return [r[0] for r in rows]
