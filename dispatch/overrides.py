"""Dispatcher overrides: assign, move to position, lock, unlock, unassign.

An override is one standing row per job in ``dispatch_overrides``; every later plan honours it
(see :func:`dispatch.store.load_problem`). An override that breaks a hard rule (missing skill,
outside the technician's shift) is refused with the reason, unless forced: then it is kept with
the warning recorded, and the plan waives the rule for that job.
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from fieldops import events
from fieldops.domain import JobStatus
from fieldops.service import jobs as job_service
from fieldops.service import parts as part_service
from fieldops.service.errors import NotFoundError, ServiceError

log = logging.getLogger(__name__)

OVERRIDE = "dispatch.override"
ACTIONS = ("assign", "move", "lock", "unlock", "unassign")


class OverrideRefused(ServiceError):
    """The override breaks a hard rule and was not forced."""


def _broken_rules(conn: psycopg.Connection, job: job_service.Job, technician_id: int,
                  now: datetime) -> list[str]:
    row = conn.execute(
        "SELECT skills, active, timezone, shift_start, shift_end FROM technicians WHERE id = %s",
        (technician_id,)).fetchone()
    if row is None:
        raise NotFoundError("technician_id", f"technician {technician_id} does not exist")
    skills, active, tz, s_start, s_end = row
    broken = []
    if not active:
        broken.append(f"technician {technician_id} is not active")
    missing = sorted(job.required_skills - set(skills))
    if missing:
        broken.append(f"technician {technician_id} lacks skill {', '.join(missing)}")
    day = now.astimezone(ZoneInfo(tz)).date()
    begin = datetime.combine(day, s_start, tzinfo=ZoneInfo(tz))
    end = datetime.combine(day, s_end, tzinfo=ZoneInfo(tz))
    if end <= now:
        broken.append(f"technician {technician_id}'s shift is over")
    elif job.windows and not any(w.start < end and w.end > max(begin, now) for w in job.windows):
        broken.append(f"job {job.id}'s customer windows are outside technician {technician_id}'s shift")
    return broken


def apply(conn: psycopg.Connection, action: str, job_id: int, *, actor: str, now: datetime,
          technician_id: int | None = None, position: int | None = None, force: bool = False
          ) -> str | None:
    """Record a dispatcher override in the caller's transaction; returns the warning if forced.

    ``lock`` fixes the job where the active plan has it (technician, order and start time).
    """
    if action not in ACTIONS:
        raise ServiceError("action", f"must be one of {', '.join(ACTIONS)}")
    job = job_service.get_job(conn, job_id)
    if not job.is_open:
        raise ServiceError("job_id", f"job {job_id} is {job.status}")
    locked_start = None
    if action == "unlock":
        conn.execute("DELETE FROM dispatch_overrides WHERE job_id = %s", (job_id,))
        return _announce(conn, action, job_id, None, None)
    if action == "unassign":
        technician_id, position = None, None
        if job.status is JobStatus.SCHEDULED:
            part_service.release_job(conn, job_id, actor=actor, now=now)
            job_service.unassign(conn, job_id, actor=actor, now=now, note="unassigned by dispatcher")
    elif action == "lock":
        row = conn.execute(
            "SELECT v.technician_id, v.sequence, v.start_at FROM plan_visits v JOIN plans p "
            "ON p.id = v.plan_id WHERE p.active AND v.job_id = %s AND v.kind = 'job'", (job_id,)
        ).fetchone()
        if row is None:
            raise ServiceError("job_id", f"job {job_id} is not in the active plan; assign it first")
        technician_id, position, locked_start = row
    elif technician_id is None:
        raise ServiceError("technician_id", f"{action} needs a technician")
    if action == "move" and (position is None or position < 0):
        raise ServiceError("position", "move needs a position >= 0")
    warning = None
    if technician_id is not None:
        broken = _broken_rules(conn, job, technician_id, now)
        if broken and not force:
            raise OverrideRefused("technician_id", "; ".join(broken))
        warning = "; ".join(broken) or None
    conn.execute(
        "INSERT INTO dispatch_overrides (job_id, technician_id, position, locked_start, forced, "
        "warning, actor, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (job_id) DO UPDATE SET technician_id = excluded.technician_id, "
        "position = excluded.position, locked_start = excluded.locked_start, forced = excluded.forced, "
        "warning = excluded.warning, actor = excluded.actor, created_at = excluded.created_at",
        (job_id, technician_id, position, locked_start, bool(warning), warning, actor, now))
    if warning:
        log.warning("job %d: forced override by %s: %s", job_id, actor, warning)
    return _announce(conn, action, job_id, technician_id, warning)


def _announce(conn: psycopg.Connection, action: str, job_id: int, technician_id: int | None,
              warning: str | None) -> str | None:
    events.publish(conn, OVERRIDE, {"action": action, "job_id": job_id, "technician_id": technician_id,
                                    "warning": warning}, job_id=job_id, technician_id=technician_id)
    return warning
