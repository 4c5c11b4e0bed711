"""Preventive maintenance plans per device model: open jobs ahead of time, every N days or N run hours.

Plans run on a fixed schedule from the device's installation (calendar) or from zero run hours;
each cycle opens one job (failure mode ``pm:<plan code>``, so at most one is open per device and
plan) ``lead_days`` before it is due. For run-hour plans the lead is converted to run hours with
the device's average usage so far (run hours per hour since installation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from fieldops.domain import JobSource, JobType
from fieldops.service import jobs
from fieldops.service.errors import NotFoundError, ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreventivePlan:
    id: int
    model_code: str
    code: str
    name: str
    every_days: int | None
    every_run_hours: float | None
    lead_days: int
    skill: str
    duration_s: int
    priority: int


def add_plan(
    conn: psycopg.Connection, model_code: str, code: str, name: str, *, skill: str, duration_s: int,
    every_days: int | None = None, every_run_hours: float | None = None, lead_days: int = 7, priority: int = 4,
) -> PreventivePlan:
    """Create or replace a model's plan ``code``."""
    if every_days is None and every_run_hours is None:
        raise ServiceError("every_days", "a plan needs every_days or every_run_hours")
    if every_days is not None and every_days <= 0:
        raise ServiceError("every_days", "must be positive")
    if every_run_hours is not None and every_run_hours <= 0:
        raise ServiceError("every_run_hours", "must be positive")
    if duration_s <= 0:
        raise ServiceError("duration_s", "must be positive")
    if lead_days < 0:
        raise ServiceError("lead_days", "must not be negative")
    if not 1 <= priority <= 4:
        raise ServiceError("priority", "must be 1..4")
    row = conn.execute(
        "INSERT INTO preventive_plans (model_id, code, name, every_days, every_run_hours, lead_days, skill, "
        "duration_s, priority) SELECT id, %s, %s, %s, %s, %s, %s, %s, %s FROM device_models WHERE code = %s "
        "ON CONFLICT (model_id, code) DO UPDATE SET name = excluded.name, every_days = excluded.every_days, "
        "every_run_hours = excluded.every_run_hours, lead_days = excluded.lead_days, skill = excluded.skill, "
        "duration_s = excluded.duration_s, priority = excluded.priority RETURNING id",
        (code, name, every_days, every_run_hours, lead_days, skill, duration_s, priority, model_code),
    ).fetchone()
    if row is None:
        raise NotFoundError("model_code", f"device model {model_code} does not exist")
    return PreventivePlan(row[0], model_code, code, name, every_days, every_run_hours, lead_days, skill,
                          duration_s, priority)


def plans(conn: psycopg.Connection) -> list[PreventivePlan]:
    rows = conn.execute(
        "SELECT p.id, m.code, p.code, p.name, p.every_days, p.every_run_hours, p.lead_days, p.skill, "
        "p.duration_s, p.priority FROM preventive_plans p JOIN device_models m ON m.id = p.model_id ORDER BY p.id"
    ).fetchall()
    return [PreventivePlan(*r) for r in rows]


def _next_due(plan: PreventivePlan, installed_at: datetime, run_hours: float, now: datetime,
              last_due: datetime | None, last_hours: float | None) -> tuple[datetime, float] | None:
    """(due date, run-hour mark) of the next cycle when it falls within the lead time, else None."""
    lead = timedelta(days=plan.lead_days)
    if plan.every_days is not None:
        due = (last_due or installed_at) + timedelta(days=plan.every_days)
        if now >= due - lead:
            return max(due, now), run_hours  # an overdue cycle is due now; the next counts from here
    if plan.every_run_hours is not None:
        mark = (last_hours or 0.0) + plan.every_run_hours
        age_h = max((now - installed_at).total_seconds() / 3600.0, 1.0)
        usage = min(max(run_hours / age_h, 0.0), 1.0)  # run hours per calendar hour
        if usage > 0 and run_hours >= mark - usage * lead.total_seconds() / 3600.0:
            return now + timedelta(hours=max(mark - run_hours, 0.0) / usage), mark
    return None


def open_due_jobs(conn: psycopg.Connection, now: datetime) -> list[jobs.Job]:
    """Open a preventive job for every device whose next plan cycle is within the plan's lead time."""
    opened: list[jobs.Job] = []
    for plan in plans(conn):
        rows = conn.execute(
            "SELECT d.id, d.installed_at, d.run_hours, s.due_at, s.run_hours FROM devices d "
            "JOIN device_models m ON m.id = d.model_id "
            "LEFT JOIN preventive_state s ON s.plan_id = %s AND s.device_id = d.id "
            "WHERE m.code = %s ORDER BY d.id",
            (plan.id, plan.model_code),
        ).fetchall()
        for device_id, installed_at, run_hours, last_due, last_hours in rows:
            nxt = _next_due(plan, installed_at, run_hours, now, last_due, last_hours)
            if nxt is None:
                continue
            due, mark = nxt
            job = jobs.create_job(conn, jobs.JobRequest(
                source=JobSource.PREVENTIVE_SCHEDULE, type=JobType.PREVENTIVE, device_id=device_id,
                failure_mode=f"{jobs.PM_PREFIX}{plan.code}", priority=plan.priority, required_skills=frozenset({plan.skill}),
                required_parts=(), estimated_duration_s=plan.duration_s,
                explanation=f"{plan.name} due {due.isoformat()}",
                evidence={"plan": plan.code, "due_at": due.isoformat(), "run_hours": run_hours},
            ), actor="preventive", now=now)
            conn.execute(
                "INSERT INTO preventive_state (plan_id, device_id, due_at, run_hours, job_id) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (plan_id, device_id) DO UPDATE SET "
                "due_at = excluded.due_at, run_hours = excluded.run_hours, job_id = excluded.job_id",
                (plan.id, device_id, due, mark, job.id),
            )
            opened.append(job)
    if opened:
        log.info("preventive: %d job(s) opened or refreshed", len(opened))
    return opened
