"""Customer feedback on finished jobs; a low rating opens a follow-up task for the service manager."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

from fieldops import events
from fieldops.service.errors import NotFoundError, ServiceError

log = logging.getLogger(__name__)

LOW_RATING = 2  # ratings at or below this open a manager task


@dataclass(frozen=True, slots=True)
class Feedback:
    job_id: int
    rating: int
    comment: str
    created_at: datetime
    task_id: int | None = None


@dataclass(frozen=True, slots=True)
class ManagerTask:
    id: int
    job_id: int | None
    kind: str
    description: str
    status: str
    created_at: datetime
    closed_at: datetime | None = None


def submit(conn: psycopg.Connection, job_id: int, rating: int, comment: str = "", *, now: datetime) -> Feedback:
    """Record the customer's rating (1-5) of a completed or unresolved job, once."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ServiceError("rating", f"must be an integer 1..5, got {rating!r}")
    if len(comment) > 4000:
        raise ServiceError("comment", "at most 4000 characters")
    row = conn.execute("SELECT status, technician_id FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError("job_id", f"job {job_id} does not exist")
    if row[0] not in ("completed", "unresolved"):
        raise ServiceError("job_id", f"job {job_id} is {row[0]}; feedback follows the visit")
    inserted = conn.execute(
        "INSERT INTO feedback (job_id, rating, comment, created_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
        (job_id, rating, comment, now),
    ).fetchone()
    if inserted is None:
        raise ServiceError("job_id", f"job {job_id} has already been rated")
    task_id = None
    if rating <= LOW_RATING:
        task_id = open_task(conn, job_id, "low_rating",
                            f"customer rated job {job_id} {rating}/5" + (f": {comment}" if comment else ""), now=now)
    events.publish(conn, events.JOB_UPDATED, {"job_id": job_id, "reason": "feedback", "rating": rating},
                   job_id=job_id, technician_id=row[1])
    return Feedback(job_id, rating, comment, now, task_id)


def get(conn: psycopg.Connection, job_id: int) -> Feedback | None:
    row = conn.execute(
        "SELECT f.job_id, f.rating, f.comment, f.created_at, (SELECT min(id) FROM manager_tasks t "
        "WHERE t.job_id = f.job_id AND t.kind = 'low_rating') FROM feedback f WHERE f.job_id = %s", (job_id,)
    ).fetchone()
    return None if row is None else Feedback(*row)


def open_task(conn: psycopg.Connection, job_id: int | None, kind: str, description: str, *, now: datetime) -> int:
    (task_id,) = conn.execute(
        "INSERT INTO manager_tasks (job_id, kind, description, created_at) VALUES (%s, %s, %s, %s) RETURNING id",
        (job_id, kind, description, now),
    ).fetchone()
    log.info("manager task %d (%s) for job %s", task_id, kind, job_id)
    return int(task_id)


def tasks(conn: psycopg.Connection, *, open_only: bool = True) -> list[ManagerTask]:
    rows = conn.execute(
        "SELECT id, job_id, kind, description, status, created_at, closed_at FROM manager_tasks "
        "WHERE status = 'open' OR NOT %s ORDER BY created_at, id", (open_only,)
    ).fetchall()
    return [ManagerTask(*r) for r in rows]


def close_task(conn: psycopg.Connection, task_id: int, *, now: datetime) -> None:
    row = conn.execute(
        "UPDATE manager_tasks SET status = 'done', closed_at = %s WHERE id = %s AND status = 'open' RETURNING id",
        (now, task_id),
    ).fetchone()
    if row is None:
        raise NotFoundError("task_id", f"no open manager task {task_id}")
