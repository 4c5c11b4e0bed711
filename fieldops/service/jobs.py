"""Jobs (work orders): creation with de-duplication, the one lifecycle, assignment, fault events.

Lifecycle (``TRANSITIONS`` is the only place that knows it)::

    new -> scheduled -> dispatched -> en_route -> on_site -> completed | unresolved
    new/scheduled/dispatched/en_route -> cancelled;  scheduled -> new (unassigned);
    dispatched/en_route -> scheduled (recalled or re-planned)

Every change bumps ``version`` (optimistic concurrency), writes a ``job_events`` row (the audit
trail) and publishes an event in the same transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from fieldops import events
from fieldops.domain import (
    OPEN_JOB_STATUSES,
    JobSource,
    JobStatus,
    JobType,
    PartQuantity,
    Priority,
    TimeWindow,
)
from fieldops.domain import Job as DomainJob
from fieldops.service import parts, sla
from fieldops.service.errors import ConflictError, NotFoundError, ServiceError, TransitionError

log = logging.getLogger(__name__)

S = JobStatus
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.NEW: frozenset({S.SCHEDULED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.DISPATCHED, S.NEW, S.CANCELLED}),
    S.DISPATCHED: frozenset({S.EN_ROUTE, S.SCHEDULED, S.CANCELLED}),
    S.EN_ROUTE: frozenset({S.ON_SITE, S.SCHEDULED, S.CANCELLED}),
    S.ON_SITE: frozenset({S.COMPLETED, S.UNRESOLVED}),
    S.COMPLETED: frozenset(),
    S.UNRESOLVED: frozenset(),
    S.CANCELLED: frozenset(),
}
OPEN = tuple(sorted(s.value for s in OPEN_JOB_STATUSES))
FINDINGS = ("fault_confirmed", "no_fault_found", "other")
DEFAULT_DURATION_S = 3600
SITE_OFFLINE_MODE = "site_offline"
OFFLINE_CODE = "offline"
PM_PREFIX = "pm:"  # preventive plans' jobs carry "pm:<plan code>" as their failure mode


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A request to open a job. ``site_id`` may be omitted when ``device_id`` is given.

    Skills, parts and duration default from the device model's failure mode when it is known.
    """

    source: JobSource | str
    type: JobType | str = JobType.REPAIR
    device_id: int | None = None
    site_id: int | None = None
    failure_mode: str | None = None
    priority: int = Priority.NORMAL
    required_skills: frozenset[str] | None = None
    required_parts: tuple[PartQuantity, ...] | None = None
    estimated_duration_s: int | None = None
    windows: tuple[TimeWindow | tuple[datetime, datetime], ...] = ()
    explanation: str = ""
    notes: str = ""
    evidence: Mapping[str, Any] | None = None
    parent_job_id: int | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored; the fields of :class:`fieldops.domain.Job` plus the service state."""

    id: int
    device_id: int | None
    site_id: int
    type: JobType
    source: JobSource
    status: JobStatus
    priority: int
    estimated_duration_s: int
    required_skills: frozenset[str] = frozenset()
    required_parts: tuple[PartQuantity, ...] = ()
    failure_mode: str | None = None
    windows: tuple[TimeWindow, ...] = ()
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    version: int = 1
    explanation: str = ""
    notes: str = ""
    evidence: tuple[Mapping[str, Any], ...] = ()
    parent_job_id: int | None = None
    technician_id: int | None = None
    planned_arrival: datetime | None = None
    eta: datetime | None = None
    at_risk: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    arrived_at: datetime | None = None
    completed_at: datetime | None = None
    finding: str | None = None
    finding_mode: str | None = None
    follow_up_job_id: int | None = field(default=None, compare=False)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_JOB_STATUSES

    def as_domain(self) -> DomainJob:
        return DomainJob(
            self.id, self.device_id, self.site_id, self.type, self.source, self.status, self.priority,
            self.estimated_duration_s, self.required_skills, self.required_parts, self.failure_mode,
            self.windows, self.response_due, self.resolution_due, self.version,
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    job_id: int
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    lat: float | None = None
    lon: float | None = None
    note: str | None = None


# ---------------------------------------------------------------- reading

_COLUMNS = (
    "id, device_id, site_id, type, source, status, priority, estimated_duration_s, required_skills, "
    "failure_mode, response_due, resolution_due, version, explanation, notes, evidence, parent_job_id, "
    "technician_id, planned_arrival, eta, at_risk, created_at, updated_at, arrived_at, completed_at, "
    "finding, finding_mode"
)


def _load(conn: psycopg.Connection, where: str, params: Sequence[Any], tail: str = "") -> list[Job]:
    query = sql.SQL("SELECT {} FROM jobs WHERE {} {}").format(sql.SQL(_COLUMNS), sql.SQL(where), sql.SQL(tail))
    rows = conn.execute(query, params).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    parts_of: dict[int, list[PartQuantity]] = {}
    for job_id, sku, qty in conn.execute(
        "SELECT jp.job_id, p.sku, jp.quantity FROM job_parts jp JOIN parts p ON p.id = jp.part_id "
        "WHERE jp.job_id = ANY(%s) ORDER BY p.sku", (ids,)
    ):
        parts_of.setdefault(job_id, []).append(PartQuantity(sku, qty))
    windows_of: dict[int, list[TimeWindow]] = {}
    for job_id, start, end in conn.execute(
        "SELECT job_id, start_at, end_at FROM job_windows WHERE job_id = ANY(%s) ORDER BY start_at", (ids,)
    ):
        windows_of.setdefault(job_id, []).append(TimeWindow(start, end))
    return [
        Job(
            id=r[0], device_id=r[1], site_id=r[2], type=JobType(r[3]), source=JobSource(r[4]),
            status=JobStatus(r[5]), priority=r[6], estimated_duration_s=r[7], required_skills=frozenset(r[8]),
            required_parts=tuple(parts_of.get(r[0], ())), failure_mode=r[9],
            windows=tuple(windows_of.get(r[0], ())), response_due=r[10], resolution_due=r[11], version=r[12],
            explanation=r[13], notes=r[14], evidence=tuple(r[15]), parent_job_id=r[16], technician_id=r[17],
            planned_arrival=r[18], eta=r[19], at_risk=r[20], created_at=r[21], updated_at=r[22],
            arrived_at=r[23], completed_at=r[24], finding=r[25], finding_mode=r[26],
        )
        for r in rows
    ]


def get_job(conn: psycopg.Connection, job_id: int) -> Job:
    found = _load(conn, "id = %s", (job_id,))
    if not found:
        raise NotFoundError("job_id", f"job {job_id} does not exist")
    return found[0]


def open_jobs(
    conn: psycopg.Connection, *, site_id: int | None = None, technician_id: int | None = None,
    device_id: int | None = None, region: str | None = None,
) -> list[Job]:
    """Open jobs, most urgent first (priority, then response deadline, then age)."""
    where = ["status = ANY(%s)"]
    params: list[Any] = [list(OPEN)]
    for column, value in (("site_id", site_id), ("technician_id", technician_id), ("device_id", device_id)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if region is not None:
        where.append("site_id IN (SELECT id FROM sites WHERE region = %s)")
        params.append(region)
    return _load(conn, " AND ".join(where), params, "ORDER BY priority, response_due NULLS LAST, id")


def jobs_of_device(conn: psycopg.Connection, device_id: int) -> list[Job]:
    """Every job of a device, newest first: its maintenance history."""
    return _load(conn, "device_id = %s", (device_id,), "ORDER BY created_at DESC, id DESC")


def job_events(conn: psycopg.Connection, job_id: int) -> list[JobEvent]:
    """The audit trail of one job, oldest first."""
    rows = conn.execute(
        "SELECT job_id, from_status, to_status, actor, at, lat, lon, note FROM job_events "
        "WHERE job_id = %s ORDER BY at, id", (job_id,)
    ).fetchall()
    return [JobEvent(*r) for r in rows]


# ---------------------------------------------------------------- creation


@dataclass(frozen=True, slots=True)
class _Resolved:
    device_id: int | None
    site_id: int
    skills: frozenset[str]
    parts: tuple[tuple[int, int], ...]  # (part id, quantity)
    duration_s: int
    windows: tuple[TimeWindow, ...]


def _windows(given: Iterable[TimeWindow | tuple[datetime, datetime]]) -> tuple[TimeWindow, ...]:
    """Windows as TimeWindow values; accepts (start, end) pairs; field ``windows`` when invalid."""
    out = []
    for window in given:
        start, end = (window.start, window.end) if isinstance(window, TimeWindow) else window
        if start.tzinfo is None or end.tzinfo is None:
            raise ServiceError("windows", "window times must carry a time zone")
        if end <= start:
            raise ServiceError("windows", f"window ending {end.isoformat()} ends before it starts")
        out.append(TimeWindow(start, end))
    return tuple(sorted(out, key=lambda w: w.start))


def _enum(value: Any, kind: type, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ServiceError(name, f"unknown {name} {value!r}") from None


def _resolve(conn: psycopg.Connection, req: JobRequest) -> _Resolved:
    """Validate a request against the database and fill defaults from the failure mode."""
    if isinstance(req.priority, bool) or not isinstance(req.priority, int) or not 1 <= req.priority <= 4:
        raise ServiceError("priority", f"must be 1 (critical) .. 4 (low), got {req.priority!r}")
    if req.estimated_duration_s is not None and req.estimated_duration_s <= 0:
        raise ServiceError("estimated_duration_s", "must be positive")
    windows = _windows(req.windows)
    site_id = req.site_id
    mode_skill: str | None = None
    mode_duration: int | None = None
    mode_parts: list[tuple[int, int]] = []
    if req.device_id is not None:
        row = conn.execute("SELECT site_id, model_id FROM devices WHERE id = %s", (req.device_id,)).fetchone()
        if row is None:
            raise NotFoundError("device_id", f"device {req.device_id} does not exist")
        if site_id is not None and site_id != row[0]:
            raise ServiceError("site_id", f"device {req.device_id} is at site {row[0]}, not {site_id}")
        site_id = row[0]
        if req.failure_mode:
            fm = conn.execute(
                "SELECT id, skill, repair_duration_s FROM failure_modes WHERE model_id = %s AND code = %s",
                (row[1], req.failure_mode),
            ).fetchone()
            if fm is not None:
                mode_skill, mode_duration = fm[1], fm[2]
                mode_parts = conn.execute(
                    "SELECT part_id, quantity FROM failure_mode_parts WHERE failure_mode_id = %s ORDER BY part_id",
                    (fm[0],),
                ).fetchall()
            elif not _system_code(req.failure_mode):
                raise ServiceError("failure_mode", _unknown_mode(conn, req.device_id, req.failure_mode))
    if site_id is None:
        raise ServiceError("site_id", "a job needs a device or a site")
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (site_id,)).fetchone() is None:
        raise NotFoundError("site_id", f"site {site_id} does not exist")
    if req.required_parts is not None:
        skus = [p.sku for p in req.required_parts]
        known = dict(conn.execute("SELECT sku, id FROM parts WHERE sku = ANY(%s)", (skus,)).fetchall())
        for p in req.required_parts:
            if p.sku not in known:
                raise NotFoundError("required_parts", f"unknown part {p.sku}")
            if p.quantity <= 0:
                raise ServiceError("required_parts", f"part {p.sku}: quantity must be positive")
        part_rows = tuple((known[p.sku], p.quantity) for p in req.required_parts)
    else:
        part_rows = tuple((int(a), int(b)) for a, b in mode_parts)
    if req.required_skills is not None:
        skills = frozenset(req.required_skills)
    else:
        skills = frozenset({mode_skill}) if mode_skill else frozenset()
    duration = req.estimated_duration_s or mode_duration or DEFAULT_DURATION_S
    return _Resolved(req.device_id, site_id, skills, part_rows, duration, windows)


def _evidence_item(req: JobRequest, now: datetime) -> list[dict[str, Any]]:
    if req.evidence is None:
        return []
    return [{"at": now.isoformat(), "source": str(JobSource(req.source)), **dict(req.evidence)}]


def _audit(
    conn: psycopg.Connection, job_id: int, from_status: str | None, to_status: str, actor: str, at: datetime,
    *, lat: float | None = None, lon: float | None = None, note: str | None = None,
    technician_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO job_events (job_id, from_status, to_status, actor, at, lat, lon, note, technician_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (job_id, from_status, to_status, actor, at, lat, lon, note, technician_id),
    )


def _find_open_duplicate(conn: psycopg.Connection, device_id: int | None, site_id: int,
                         failure_mode: str | None) -> int | None:
    if device_id is not None:
        row = conn.execute(
            "SELECT id FROM jobs WHERE device_id = %s AND coalesce(failure_mode, '') = %s AND status = ANY(%s) "
            "FOR UPDATE", (device_id, failure_mode or "", list(OPEN)),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT id FROM jobs WHERE device_id IS NULL AND site_id = %s AND coalesce(failure_mode, '') = %s "
            "AND status = ANY(%s) FOR UPDATE", (site_id, failure_mode or "", list(OPEN)),
        ).fetchone()
    return None if row is None else int(row[0])


def _merge(conn: psycopg.Connection, job_id: int, req: JobRequest, actor: str, now: datetime) -> Job:
    """Fold a duplicate signal into the open job: raise its priority, append the evidence."""
    job = get_job(conn, job_id)
    priority = min(job.priority, int(req.priority))
    response_due, resolution_due = job.response_due, job.resolution_due
    if priority < job.priority:
        new_response, new_resolution = sla.deadlines(conn, job.site_id, priority, now)
        response_due = min(d for d in (response_due, new_response) if d is not None)
        resolution_due = min(d for d in (resolution_due, new_resolution) if d is not None)
    conn.execute(
        "UPDATE jobs SET priority = %s, response_due = %s, resolution_due = %s, "
        "evidence = evidence || %s::jsonb, updated_at = %s, version = version + 1 WHERE id = %s",
        (priority, response_due, resolution_due, json.dumps(_evidence_item(req, now), default=str), now, job_id),
    )
    note = f"duplicate signal from {JobSource(req.source)}" + (
        f"; priority raised {job.priority} -> {priority}" if priority < job.priority else "")
    _audit(conn, job_id, job.status, job.status, actor, now, note=note)
    merged = get_job(conn, job_id)
    events.publish(conn, events.JOB_UPDATED, {
        "job_id": job_id, "version": merged.version, "priority": merged.priority,
        "reason": "duplicate", "source": str(JobSource(req.source)),
    }, job_id=job_id, technician_id=merged.technician_id)
    return merged


def create_job(conn: psycopg.Connection, request: JobRequest, *, actor: str, now: datetime) -> Job:
    """Open a job, or fold the request into the open job for the same device and failure mode.

    Runs in the caller's transaction; the caller commits.
    """
    source = _enum(request.source, JobSource, "source")
    job_type = _enum(request.type, JobType, "type")
    resolved = _resolve(conn, request)
    if request.parent_job_id is not None and not _load(conn, "id = %s", (request.parent_job_id,)):
        raise NotFoundError("parent_job_id", f"job {request.parent_job_id} does not exist")
    for _attempt in range(3):
        existing = _find_open_duplicate(conn, resolved.device_id, resolved.site_id, request.failure_mode)
        if existing is not None:
            return _merge(conn, existing, request, actor, now)
        response_due, resolution_due = sla.deadlines(conn, resolved.site_id, int(request.priority), now)
        try:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO jobs (device_id, site_id, type, source, status, failure_mode, priority, "
                    "required_skills, estimated_duration_s, response_due, resolution_due, explanation, notes, "
                    "evidence, parent_job_id, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, 'new', %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s) "
                    "RETURNING id",
                    (resolved.device_id, resolved.site_id, job_type.value, source.value, request.failure_mode,
                     int(request.priority), sorted(resolved.skills), resolved.duration_s, response_due,
                     resolution_due, request.explanation, request.notes,
                     json.dumps(_evidence_item(request, now), default=str), request.parent_job_id, now, now),
                ).fetchone()
        except pg_errors.UniqueViolation:
            log.info("concurrent open job for device %s mode %s; merging", resolved.device_id, request.failure_mode)
            continue
        job_id = int(row[0])
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO job_windows (job_id, start_at, end_at) VALUES (%s, %s, %s)",
                [(job_id, w.start, w.end) for w in resolved.windows],
            )
            cur.executemany(
                "INSERT INTO job_parts (job_id, part_id, quantity) VALUES (%s, %s, %s)",
                [(job_id, pid, qty) for pid, qty in resolved.parts],
            )
        _audit(conn, job_id, None, S.NEW, actor, now, note=request.explanation or None)
        job = get_job(conn, job_id)
        events.publish(conn, events.JOB_CREATED, {
            "job_id": job_id, "device_id": job.device_id, "site_id": job.site_id, "type": job.type,
            "source": job.source, "priority": job.priority, "failure_mode": job.failure_mode,
            "response_due": job.response_due, "version": job.version,
        }, job_id=job_id)
        log.info("job %d opened (%s, %s, P%d)", job_id, source, request.failure_mode, job.priority)
        return job
    raise ConflictError("device_id", "could not open or merge the job under concurrent creation")


# ---------------------------------------------------------------- lifecycle


def _lock(conn: psycopg.Connection, job_id: int, expected_version: int | None) -> Job:
    row = conn.execute("SELECT version FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError("job_id", f"job {job_id} does not exist")
    if expected_version is not None and row[0] != expected_version:
        raise ConflictError("version", f"job {job_id} is at version {row[0]}, not {expected_version}; reload it")
    return get_job(conn, job_id)


def device_modes(conn: psycopg.Connection, device_id: int) -> list[str]:
    """The failure mode codes of ``device_id``'s model."""
    return [r[0] for r in conn.execute(
        "SELECT f.code FROM failure_modes f JOIN devices d ON d.model_id = f.model_id WHERE d.id = %s "
        "ORDER BY f.code", (device_id,)).fetchall()]


def _system_code(code: str) -> bool:
    """A job key fieldops sets itself rather than a failure mode: offline devices, preventive plans."""
    return code == OFFLINE_CODE or code.startswith(PM_PREFIX)


def _unknown_mode(conn: psycopg.Connection, device_id: int, mode: str) -> str:
    return (f"device {device_id}'s model has no failure mode {mode!r} "
            f"(it has {', '.join(device_modes(conn, device_id)) or 'none'})")


def transition(
    conn: psycopg.Connection, job_id: int, to_status: JobStatus | str, *, expected_version: int | None,
    actor: str, now: datetime, lat: float | None = None, lon: float | None = None, note: str | None = None,
    finding: str | None = None, finding_mode: str | None = None,
    parts_used: Iterable[PartQuantity] = (), technician_id: int | None = None,
    planned_arrival: datetime | None = None, eta: datetime | None = None,
) -> Job:
    """Move a job to ``to_status``; the only place that knows the allowed transitions.

    ``expected_version`` is the version the caller read (None skips the check, for system actors
    holding no copy). Completion takes ``finding`` (fault_confirmed | no_fault_found | other) and
    ``parts_used``; unresolved opens a linked follow-up job. Returns the job as stored.
    """
    target = _enum(to_status, JobStatus, "to_status")
    if (lat is None) != (lon is None):
        raise ServiceError("lat", "lat and lon go together")
    job = _lock(conn, job_id, expected_version)
    if target not in TRANSITIONS[job.status]:
        raise TransitionError("to_status", f"job {job_id} cannot go from {job.status} to {target}")
    used = tuple(parts_used)
    for p in used:
        if p.quantity <= 0:
            raise ServiceError("parts_used", f"part {p.sku}: quantity must be positive")
    if finding is not None and finding not in FINDINGS:
        raise ServiceError("finding", f"must be one of {', '.join(FINDINGS)}")
    if finding_mode and job.device_id is not None and finding_mode not in device_modes(conn, job.device_id):
        raise ServiceError("finding_mode", _unknown_mode(conn, job.device_id, finding_mode))
    if target is S.COMPLETED and finding is None:
        raise ServiceError("finding", "completion needs a finding")
    if used and target not in (S.COMPLETED, S.UNRESOLVED):
        raise ServiceError("parts_used", "parts are recorded on completion")

    tech = job.technician_id
    arrival, job_eta = job.planned_arrival, job.eta
    sets: dict[str, Any] = {}
    if target is S.SCHEDULED:
        tech = technician_id if technician_id is not None else tech
        if tech is None:
            raise ServiceError("technician_id", "scheduling needs a technician")
        _check_technician(conn, tech)
        if tech != job.technician_id:
            parts.release_job(conn, job_id, actor=actor, now=now)
        arrival = planned_arrival if planned_arrival is not None else arrival
        job_eta = eta
    elif target is S.NEW:
        parts.release_job(conn, job_id, actor=actor, now=now)
        tech, arrival, job_eta = None, None, None
    elif eta is not None:
        job_eta = eta
    if target is S.ON_SITE:
        sets["arrived_at"] = now
        if job.response_due is not None and now > job.response_due:
            sla.record_breach(conn, job_id, "response", job.response_due, now)
    if target in (S.COMPLETED, S.UNRESOLVED, S.CANCELLED):
        sets["completed_at"] = now
        if target is not S.CANCELLED and job.resolution_due is not None and now > job.resolution_due:
            sla.record_breach(conn, job_id, "resolution", job.resolution_due, now)
    if target in (S.COMPLETED, S.UNRESOLVED):
        if used:
            parts.consume_for_job(conn, job_id, used, technician_id=tech, actor=actor, now=now)
        parts.release_job(conn, job_id, actor=actor, now=now)
        sets["finding"] = finding
        sets["finding_mode"] = finding_mode or (job.failure_mode if finding == "fault_confirmed" else None)
    if target is S.CANCELLED:
        parts.release_job(conn, job_id, actor=actor, now=now)
    if note and target in (S.COMPLETED, S.UNRESOLVED):
        sets["notes"] = f"{job.notes}\n{note}".strip()
    at_risk = _at_risk(job.response_due, arrival, job_eta) if target in OPEN_JOB_STATUSES else False
    if target is S.ON_SITE:
        at_risk = False

    extra = sql.SQL("").join(
        sql.SQL(", {} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in sets
    )
    conn.execute(
        sql.SQL(
            "UPDATE jobs SET status = %(status)s, technician_id = %(tech)s, planned_arrival = %(arrival)s, "
            "eta = %(eta)s, at_risk = %(at_risk)s, updated_at = %(now)s, version = version + 1{} "
            "WHERE id = %(id)s"
        ).format(extra),
        {"status": target.value, "tech": tech, "arrival": arrival, "eta": job_eta, "at_risk": at_risk,
         "now": now, "id": job_id, **sets},
    )
    _audit(conn, job_id, job.status, target, actor, now, lat=lat, lon=lon, note=note, technician_id=tech)
    follow_up: Job | None = None
    if target is S.UNRESOLVED:
        follow_up = create_job(conn, JobRequest(
            source=JobSource.FOLLOW_UP, type=job.type, device_id=job.device_id,
            site_id=None if job.device_id is not None else job.site_id, failure_mode=job.failure_mode,
            priority=job.priority, required_skills=job.required_skills, required_parts=job.required_parts,
            estimated_duration_s=job.estimated_duration_s,
            explanation=f"follow-up of unresolved job {job_id}" + (f": {note}" if note else ""),
            evidence={"unresolved_job_id": job_id}, parent_job_id=job_id,
        ), actor=actor, now=now)
    updated = get_job(conn, job_id)
    events.publish(conn, events.JOB_STATUS, {
        "job_id": job_id, "from": job.status, "to": target, "version": updated.version,
        "technician_id": tech, "actor": actor, "lat": lat, "lon": lon,
        "follow_up_job_id": follow_up.id if follow_up else None,
    }, job_id=job_id, technician_id=tech)
    log.info("job %d: %s -> %s by %s", job_id, job.status, target, actor)
    if follow_up is not None:
        return _with_follow_up(updated, follow_up.id)
    return updated


def _with_follow_up(job: Job, follow_up_id: int) -> Job:
    values = {name: getattr(job, name) for name in Job.__dataclass_fields__}
    values["follow_up_job_id"] = follow_up_id
    return Job(**values)


def _at_risk(response_due: datetime | None, planned_arrival: datetime | None, eta: datetime | None) -> bool:
    if response_due is None:
        return False
    latest = max((t for t in (planned_arrival, eta) if t is not None), default=None)
    return latest is not None and latest > response_due


def _check_technician(conn: psycopg.Connection, technician_id: int) -> None:
    row = conn.execute("SELECT active FROM technicians WHERE id = %s", (technician_id,)).fetchone()
    if row is None:
        raise NotFoundError("technician_id", f"technician {technician_id} does not exist")
    if not row[0]:
        raise ServiceError("technician_id", f"technician {technician_id} is not active")


# ---------------------------------------------------------------- assignment (dispatch calls these)


def assign(
    conn: psycopg.Connection, job_id: int, technician_id: int, planned_arrival: datetime, *,
    actor: str = "dispatch", now: datetime, expected_version: int | None = None, eta: datetime | None = None,
    parts_location_id: int | None = None,
) -> Job:
    """Commit a job to a technician with a planned arrival.

    new -> scheduled; a scheduled job is re-planned in place; a dispatched or en-route job given to
    another technician goes back to scheduled with the new one. Parts are reserved at
    ``parts_location_id`` when given, else from the technician's van when it holds all of them.
    """
    job = _lock(conn, job_id, expected_version)
    if not job.is_open or job.status is S.ON_SITE:
        raise TransitionError("job_id", f"job {job_id} is {job.status} and cannot be (re)assigned")
    _check_technician(conn, technician_id)
    if job.status is S.SCHEDULED and technician_id != job.technician_id:  # handed to someone else
        job = transition(conn, job_id, S.NEW, expected_version=job.version, actor=actor, now=now,
                         note=f"taken from technician {job.technician_id}")
    if job.status is S.NEW or technician_id != job.technician_id:
        job = transition(conn, job_id, S.SCHEDULED, expected_version=job.version, actor=actor, now=now,
                         technician_id=technician_id, planned_arrival=planned_arrival, eta=eta,
                         note=f"assigned to technician {technician_id}")
    else:
        job = _replan(conn, job, planned_arrival, eta, now)
    if job.required_parts:
        if parts_location_id is not None:
            parts.reserve_for_job(conn, job_id, parts_location_id, actor=actor, now=now)
        else:
            van = parts.van_of(conn, technician_id)
            if van is not None and parts.covers(conn, van, job_id):
                parts.reserve_for_job(conn, job_id, van, actor=actor, now=now)
    return get_job(conn, job_id)


def _replan(conn: psycopg.Connection, job: Job, planned_arrival: datetime, eta: datetime | None,
            now: datetime) -> Job:
    at_risk = _at_risk(job.response_due, planned_arrival, eta if eta is not None else job.eta)
    conn.execute(
        "UPDATE jobs SET planned_arrival = %s, eta = coalesce(%s, eta), at_risk = %s, updated_at = %s, "
        "version = version + 1 WHERE id = %s",
        (planned_arrival, eta, at_risk, now, job.id),
    )
    updated = get_job(conn, job.id)
    events.publish(conn, events.JOB_UPDATED, {
        "job_id": job.id, "version": updated.version, "planned_arrival": planned_arrival,
        "eta": updated.eta, "at_risk": at_risk, "reason": "replanned",
    }, job_id=job.id, technician_id=job.technician_id)
    return updated


def unassign(conn: psycopg.Connection, job_id: int, *, actor: str = "dispatch", now: datetime,
             expected_version: int | None = None, note: str | None = None) -> Job:
    """Take a scheduled job back from its technician (scheduled -> new), releasing its parts."""
    return transition(conn, job_id, S.NEW, expected_version=expected_version, actor=actor, now=now, note=note)


def set_eta(conn: psycopg.Connection, job_id: int, eta: datetime, *, now: datetime) -> Job:
    """Record a technician's current ETA for an open job and refresh its at-risk flag."""
    job = _lock(conn, job_id, None)
    if not job.is_open:
        raise TransitionError("job_id", f"job {job_id} is {job.status}")
    at_risk = job.arrived_at is None and _at_risk(job.response_due, job.planned_arrival, eta)
    conn.execute(
        "UPDATE jobs SET eta = %s, at_risk = %s, updated_at = %s, version = version + 1 WHERE id = %s",
        (eta, at_risk, now, job_id),
    )
    events.publish(conn, events.JOB_UPDATED, {
        "job_id": job_id, "version": job.version + 1, "eta": eta, "at_risk": at_risk, "reason": "eta",
    }, job_id=job_id, technician_id=job.technician_id)
    return get_job(conn, job_id)


def update_job(
    conn: psycopg.Connection, job_id: int, *, expected_version: int, actor: str, now: datetime,
    priority: int | None = None, notes: str | None = None,
    windows: Sequence[TimeWindow | tuple[datetime, datetime]] | None = None,
) -> Job:
    """Edit an open job's priority, notes or customer windows (optimistic version checked)."""
    job = _lock(conn, job_id, expected_version)
    if not job.is_open:
        raise TransitionError("job_id", f"job {job_id} is {job.status} and can no longer be edited")
    if priority is not None and (not isinstance(priority, int) or not 1 <= priority <= 4):
        raise ServiceError("priority", f"must be 1 (critical) .. 4 (low), got {priority!r}")
    checked = _windows(windows) if windows is not None else None
    response_due, resolution_due = job.response_due, job.resolution_due
    if priority is not None and priority != job.priority and job.created_at is not None:
        response_due, resolution_due = sla.deadlines(conn, job.site_id, priority, job.created_at)
    conn.execute(
        "UPDATE jobs SET priority = %s, notes = %s, response_due = %s, resolution_due = %s, updated_at = %s, "
        "version = version + 1 WHERE id = %s",
        (priority or job.priority, job.notes if notes is None else notes, response_due, resolution_due, now,
         job_id),
    )
    if checked is not None:
        conn.execute("DELETE FROM job_windows WHERE job_id = %s", (job_id,))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO job_windows (job_id, start_at, end_at) VALUES (%s, %s, %s)",
                            [(job_id, w.start, w.end) for w in checked])
    _audit(conn, job_id, job.status, job.status, actor, now, note="edited")
    updated = get_job(conn, job_id)
    events.publish(conn, events.JOB_UPDATED, {
        "job_id": job_id, "version": updated.version, "priority": updated.priority, "reason": "edited",
    }, job_id=job_id, technician_id=updated.technician_id)
    return updated


# ---------------------------------------------------------------- device events -> reactive jobs


@dataclass(frozen=True, slots=True)
class EventSummary:
    handled: int
    created: tuple[int, ...]
    merged: tuple[int, ...]
    storms: tuple[int, ...]  # site ids collapsed into one site job
    failed: tuple[int, ...] = ()  # event ids that could not open a job (logged, still handled)


def process_device_events(
    conn: psycopg.Connection, now: datetime, *, storm_devices: int = 3, storm_window_s: int = 600,
    limit: int = 1000,
) -> EventSummary:
    """Open or update reactive jobs from unhandled ``device_events`` and mark them handled.

    severity 'fault' opens a repair job (failure mode from payload 'mode' when present); code
    'offline' opens an inspection job per device, except when ``storm_devices`` or more devices of
    one site went offline within ``storm_window_s``: then one site job (device NULL, mode
    'site_offline') covers them all and absorbs (cancels) their still unscheduled per-device
    offline jobs. Other events are marked handled without a job.
    """
    rows = conn.execute(
        "SELECT e.id, e.device_id, d.site_id, e.ts, e.code, e.severity, e.payload FROM device_events e "
        "JOIN devices d ON d.id = e.device_id WHERE e.handled_at IS NULL ORDER BY e.id LIMIT %s "
        "FOR UPDATE OF e SKIP LOCKED",
        (limit,),
    ).fetchall()
    created: list[int] = []
    merged: list[int] = []
    storms: list[int] = []
    failed: list[int] = []
    offline_by_site: dict[int, list[tuple]] = {}
    unknown_modes = 0
    for row in rows:
        if row[4] == OFFLINE_CODE:
            offline_by_site.setdefault(row[2], []).append(row)

    def open_for(request: JobRequest, event_ids: list[int]) -> Job | None:
        """Open or merge one job in a savepoint; a refused request is logged and counted, not fatal."""
        job = None
        try:
            with conn.transaction():
                job = create_job(conn, request, actor="device-events", now=now)
        except ServiceError as exc:
            log.warning("device events %s: no job (%s)", event_ids, exc)
            failed.extend(event_ids)
        else:
            (created if job.version == 1 else merged).append(job.id)
        for event_id in event_ids:
            _mark_handled(conn, event_id, now)
        return job

    for site_id, site_rows in offline_by_site.items():
        if _is_storm(conn, site_id, site_rows, storm_devices, storm_window_s):
            storms.append(site_id)
            devices = sorted({r[1] for r in site_rows})
            site_job = open_for(JobRequest(
                source=JobSource.FAULT_EVENT, type=JobType.INSPECTION, site_id=site_id,
                failure_mode=SITE_OFFLINE_MODE, priority=Priority.HIGH,
                required_skills=frozenset({"network"}),
                explanation=f"{len(devices)} devices at site {site_id} went offline together",
                evidence={"device_ids": devices, "event_ids": [r[0] for r in site_rows]},
            ), [r[0] for r in site_rows])
            if site_job is not None:
                _absorb_device_offline_jobs(conn, site_id, site_job.id, now)
            continue
        for r in site_rows:
            open_for(JobRequest(
                source=JobSource.FAULT_EVENT, type=JobType.INSPECTION, device_id=r[1], failure_mode=OFFLINE_CODE,
                priority=Priority.NORMAL, required_skills=frozenset({"network"}),
                explanation=f"device {r[1]} offline since {r[3].isoformat()}",
                evidence={"event_id": r[0], "code": r[4], "ts": r[3].isoformat()},
            ), [r[0]])
    for event_id, device_id, _site, ts, code, severity, payload in rows:
        if code == OFFLINE_CODE:
            continue
        if severity != "fault":
            _mark_handled(conn, event_id, now)
            continue
        mode = raw = payload.get("mode") if isinstance(payload, dict) else None
        if raw is not None and (not isinstance(raw, str) or raw not in device_modes(conn, device_id)):
            log.warning("device event %d: unknown failure mode %r; the job names none", event_id, raw)
            unknown_modes += 1
            mode = None
        said = f" ({mode})" if mode else (f" (unknown mode {raw!r})" if raw not in (None, "") else "")
        open_for(JobRequest(
            source=JobSource.FAULT_EVENT, type=JobType.REPAIR, device_id=device_id,
            failure_mode=mode or None, priority=_event_priority(payload),
            explanation=f"device fault {code}{said} at {ts.isoformat()}",
            evidence={"event_id": event_id, "code": code, "ts": ts.isoformat(), "payload": payload},
        ), [event_id])
    if rows:
        log.info("device events: %d handled, %d jobs opened, %d merged, %d storms, %d refused, "
                 "%d with an unknown failure mode", len(rows), len(created), len(merged), len(storms), len(failed),
                 unknown_modes)
    return EventSummary(len(rows), tuple(created), tuple(merged), tuple(storms), tuple(failed))


def _event_priority(payload: Any) -> int:
    """Priority from an event payload's 'priority' (1..4) when present, else high."""
    given = payload.get("priority") if isinstance(payload, dict) else None
    return given if given in (1, 2, 3, 4) and not isinstance(given, bool) else Priority.HIGH


def _absorb_device_offline_jobs(conn: psycopg.Connection, site_id: int, site_job_id: int, now: datetime) -> None:
    """Cancel the site's not yet scheduled per-device offline jobs: the site job covers them."""
    rows = conn.execute(
        "SELECT j.id, j.version FROM jobs j WHERE j.site_id = %s AND j.device_id IS NOT NULL "
        "AND j.failure_mode = %s AND j.status = 'new' ORDER BY j.id",
        (site_id, OFFLINE_CODE),
    ).fetchall()
    for job_id, version in rows:
        transition(conn, job_id, S.CANCELLED, expected_version=version, actor="device-events", now=now,
                   note=f"collapsed into site job {site_job_id}")


def _is_storm(conn: psycopg.Connection, site_id: int, site_rows: list[tuple], storm_devices: int,
              window_s: int) -> bool:
    """Whether ``storm_devices`` distinct devices of the site reported offline within the window
    ending at the newest of these events (already handled events count too)."""
    newest = max(r[3] for r in site_rows)
    (count,) = conn.execute(
        "SELECT count(DISTINCT e.device_id) FROM device_events e JOIN devices d ON d.id = e.device_id "
        "WHERE d.site_id = %s AND e.code = %s AND e.ts > %s AND e.ts <= %s",
        (site_id, OFFLINE_CODE, newest - timedelta(seconds=window_s), newest),
    ).fetchone()
    return count >= storm_devices


def _mark_handled(conn: psycopg.Connection, event_id: int, now: datetime) -> None:
    conn.execute("UPDATE device_events SET handled_at = %s WHERE id = %s", (now, event_id))
