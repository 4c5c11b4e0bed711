"""Dispatch and the database: build the Problem from open jobs, technicians and stock; commit a plan.

A plan is committed in one transaction: the previous plan is retired, reservations of re-planned
jobs are released and re-made from the plan's part sources, jobs get their technician, planned
arrival and ETA through the jobs service (optimistic versions: a job changed while the solver
ran aborts the commit), and one ``plan.changed`` event is published.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from dispatch.problem import Break, Job, Problem, Solution, Technician, Warehouse, Window
from dispatch.travel import TravelProvider
from fieldops import events
from fieldops.domain import GeoPoint, JobStatus, PartQuantity
from fieldops.service import jobs as job_service
from fieldops.service import parts as part_service

log = logging.getLogger(__name__)

PLAN_LOCK = 0x0D15A7C4  # advisory lock: one plan commit at a time
PINNED = (JobStatus.EN_ROUTE, JobStatus.ON_SITE)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A Problem plus what is needed to write its solution back."""

    problem: Problem
    versions: dict[int, int]
    statuses: dict[int, JobStatus]
    vans: dict[int, int]  # technician id -> van stock location id
    forced: dict[int, str]  # job id -> warning of a forced override


def _seconds(origin: datetime, at: datetime) -> int:
    return int((at - origin).total_seconds())


def _shift(origin: datetime, tz: str, start, end) -> tuple[int, int]:
    local = origin.astimezone(ZoneInfo(tz))
    day = local.date()
    begin = datetime.combine(day, start, tzinfo=ZoneInfo(tz))
    finish = datetime.combine(day, end, tzinfo=ZoneInfo(tz))
    return _seconds(origin, begin), _seconds(origin, finish)


class _Locations:
    def __init__(self) -> None:
        self.points: list[GeoPoint] = []
        self._index: dict[tuple[float, float], int] = {}

    def at(self, lat: float, lon: float) -> int:
        key = (lat, lon)
        if key not in self._index:
            self._index[key] = len(self.points)
            self.points.append(GeoPoint(lat, lon))
        return self._index[key]


def _stock(conn: psycopg.Connection, replanned: list[int]) -> dict[int, Counter[str]]:
    """Free stock per location, counting reservations of re-planned jobs as free."""
    rows = conn.execute(
        "SELECT s.location_id, p.sku, s.quantity - s.reserved + coalesce(("
        " SELECT sum(r.quantity) FROM stock_reservations r WHERE r.location_id = s.location_id"
        " AND r.part_id = s.part_id AND r.job_id = ANY(%s)), 0)::int "
        "FROM stock s JOIN parts p ON p.id = s.part_id",
        (replanned,),
    ).fetchall()
    free: dict[int, Counter[str]] = {}
    for loc, sku, qty in rows:
        free.setdefault(loc, Counter())[sku] = qty
    return free


def _items(counter: Counter[str] | None) -> tuple[PartQuantity, ...]:
    return tuple(PartQuantity(k, v) for k, v in sorted((counter or {}).items()) if v > 0)


def load_problem(conn: psycopg.Connection, now: datetime, provider: TravelProvider) -> Loaded:
    """The planning problem from now to the end of today's shifts."""
    locs = _Locations()
    open_jobs = job_service.open_jobs(conn)
    replanned = [j.id for j in open_jobs if j.status not in PINNED]
    free = _stock(conn, replanned)
    vans = dict(conn.execute(
        "SELECT technician_id, id FROM stock_locations WHERE kind = 'van'").fetchall())
    techs = []
    for row in conn.execute(
        "SELECT id, name, skills, home_lat, home_lon, coalesce(last_lat, home_lat), "
        "coalesce(last_lon, home_lon), timezone, shift_start, shift_end, break_start, break_end, "
        "break_duration_s FROM technicians WHERE active ORDER BY id"
    ).fetchall():
        tid, name, skills, hlat, hlon, lat, lon, tz, s_start, s_end, b_start, b_end, b_dur = row
        start_s, end_s = _shift(now, tz, s_start, s_end)
        if end_s <= 0:
            continue
        meal = None
        if b_start is not None and b_dur > 0:
            bs, be = _shift(now, tz, b_start, b_end)
            bs = max(bs, 0)
            if be - bs >= b_dur:
                meal = Break(bs, be, b_dur)
        techs.append(Technician(
            id=tid, start=locs.at(lat, lon), end=locs.at(hlat, hlon), shift_start_s=max(start_s, 0),
            shift_end_s=end_s, skills=frozenset(skills), van_stock=_items(free.get(vans.get(tid))),
            meal_break=meal, name=name))
    warehouses = tuple(
        Warehouse(id=wid, location=locs.at(lat, lon), stock=_items(free.get(wid)), name=name)
        for wid, name, lat, lon in conn.execute(
            "SELECT id, name, lat, lon FROM stock_locations WHERE kind = 'warehouse' ORDER BY id"))
    sites = {sid: (lat, lon) for sid, lat, lon in conn.execute("SELECT id, lat, lon FROM sites")}
    overrides = {r[0]: r[1:] for r in conn.execute(
        "SELECT job_id, technician_id, position, locked_start, forced, warning FROM dispatch_overrides")}
    on_shift = {t.id for t in techs}
    problem_jobs, forced = [], {}
    for j in open_jobs:
        o = overrides.get(j.id)
        if o is not None and o[0] is None:
            continue  # held back by a dispatcher
        pinned = j.technician_id if j.status in PINNED and j.technician_id in on_shift else None
        job = Job(
            id=j.id, location=locs.at(*sites[j.site_id]), duration_s=j.estimated_duration_s,
            priority=j.priority, skills=j.required_skills,
            parts=() if j.status in PINNED else j.required_parts,
            windows=tuple(Window(_seconds(now, w.start), _seconds(now, w.end)) for w in j.windows
                          if w.end > now),
            response_due_s=_seconds(now, j.response_due) if j.response_due else None,
            pinned_technician=pinned,
            current_technician=j.technician_id if j.status is JobStatus.DISPATCHED
            and j.technician_id in on_shift else None)
        if j.windows and not job.windows:
            job = replace(job, windows=(Window(-1, -1),))
        if o is not None and pinned is None and o[0] in on_shift:
            job = replace(job, assigned_technician=o[0], locked_position=o[1],
                          locked_start_s=_seconds(now, o[2]) if o[2] else None)
            if o[3]:
                job = replace(job, skills=frozenset())  # a forced override waives the skill rule
                forced[j.id] = o[4] or "forced by a dispatcher"
        problem_jobs.append(job)
    dur, dist = provider.matrices(locs.points) if locs.points else ((), ())
    problem = Problem(tuple(techs), tuple(problem_jobs), dur, dist, warehouses, origin=now)
    return Loaded(problem, {j.id: j.version for j in open_jobs}, {j.id: j.status for j in open_jobs},
                  vans, forced)


def _objective_json(s: Solution) -> str:
    o = s.objective
    return json.dumps({"travel_s": o.travel_s, "distance_m": o.distance_m, "cost": o.cost,
                       "lateness_s": o.lateness_s, "overtime_s": o.overtime_s,
                       "disrupted": o.disrupted, "unassigned": o.unassigned})


def commit_plan(conn: psycopg.Connection, loaded: Loaded, solution: Solution, *, now: datetime,
                trigger: str, actor: str = "dispatch") -> int:
    """Write ``solution`` as the active plan in one transaction; returns the plan id.

    Raises ``fieldops.service.errors.ConflictError`` when a job changed while solving.
    """
    origin = loaded.problem.origin

    def at(s: int) -> datetime:
        return origin + timedelta(seconds=s)

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PLAN_LOCK,))
        conn.execute("UPDATE plans SET active = false WHERE active")
        plan_id = conn.execute(
            "INSERT INTO plans (created_at, origin, trigger, solve_time_s, objective) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (now, origin, trigger, solution.solve_time_s, _objective_json(solution)),
        ).fetchone()[0]
        changed = 0
        # Free every reservation this plan re-makes before making any: a unit that moves from one
        # job to another must not still be held by the first when the second reserves it.
        for route in solution.routes:
            for stop in route.stops:
                if (stop.kind == "job" and stop.parts_from in ("van", "warehouse")
                        and loaded.statuses[stop.job_id] not in PINNED):
                    part_service.release_job(conn, stop.job_id, actor=actor, now=now)
        for u in solution.unassigned:
            if loaded.statuses.get(u.job_id) is JobStatus.SCHEDULED:
                part_service.release_job(conn, u.job_id, actor=actor, now=now)
        for route in solution.routes:
            for seq, stop in enumerate(route.stops):
                conn.execute(
                    "INSERT INTO plan_visits (plan_id, technician_id, sequence, kind, job_id, "
                    "location_id, arrival, start_at, departure, travel_s, distance_m) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (plan_id, route.technician_id, seq, stop.kind, stop.job_id, stop.warehouse_id,
                     at(stop.arrival_s), at(stop.start_s), at(stop.departure_s), stop.travel_s,
                     stop.distance_m))
                if stop.kind == "job":
                    changed += _commit_stop(conn, loaded, route.technician_id, stop, at, now, actor)
        for u in solution.unassigned:
            conn.execute("INSERT INTO plan_unassigned (plan_id, job_id, reason) VALUES (%s, %s, %s)",
                         (plan_id, u.job_id, u.reason))
            if loaded.statuses.get(u.job_id) is JobStatus.SCHEDULED:
                job_service.unassign(conn, u.job_id, actor=actor, now=now,
                                     expected_version=loaded.versions[u.job_id], note=u.reason)
                changed += 1
        events.publish(conn, events.PLAN_CHANGED, {
            "plan_id": plan_id, "trigger": trigger, "jobs_changed": changed,
            "unassigned": len(solution.unassigned), "warnings": list(loaded.forced.values())})
    log.info("plan %d committed (%s): %d job(s) changed, %d unassigned", plan_id, trigger, changed,
             len(solution.unassigned))
    return plan_id


def _commit_stop(conn: psycopg.Connection, loaded: Loaded, technician_id: int, stop, at,
                 now: datetime, actor: str) -> int:
    """Assign one planned job (or refresh its ETA when it is already under way)."""
    status = loaded.statuses[stop.job_id]
    if status in PINNED:
        job_service.set_eta(conn, stop.job_id, at(stop.start_s), now=now)
        return 0
    source = None
    if stop.parts_from == "van":
        source = loaded.vans.get(technician_id)
    elif stop.parts_from == "warehouse":
        source = stop.warehouse_id
    if source is not None:
        part_service.release_job(conn, stop.job_id, actor=actor, now=now)
    job_service.assign(conn, stop.job_id, technician_id, at(stop.start_s), actor=actor, now=now,
                       expected_version=loaded.versions[stop.job_id], eta=at(stop.start_s),
                       parts_location_id=source)
    return 1


def active_routes(conn: psycopg.Connection) -> dict[int, tuple[int, ...]]:
    """The active plan as warm-start routes (technician id -> job ids, ``-j`` = pickup for j)."""
    routes: dict[int, list[int]] = {}
    for tid, kind, job_id in conn.execute(
        "SELECT v.technician_id, v.kind, v.job_id FROM plan_visits v JOIN plans p ON p.id = v.plan_id "
        "WHERE p.active ORDER BY v.technician_id, v.sequence"
    ):
        routes.setdefault(tid, []).append(job_id if kind == "job" else -job_id)
    return {k: tuple(v) for k, v in routes.items()}


def unassigned_reasons(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute(
        "SELECT u.job_id, u.reason FROM plan_unassigned u JOIN plans p ON p.id = u.plan_id "
        "WHERE p.active").fetchall())
