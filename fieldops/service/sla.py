"""SLA terms per contract and priority: deadlines at creation, breach detection, at-risk flags."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from fieldops import events
from fieldops.domain import OPEN_JOB_STATUSES
from fieldops.service.errors import NotFoundError

log = logging.getLogger(__name__)

DEFAULT_CONTRACT = "standard"
_OPEN = sorted(s.value for s in OPEN_JOB_STATUSES)


@dataclass(frozen=True, slots=True)
class Terms:
    contract: str
    priority: int
    response_s: int
    resolution_s: int


def terms(conn: psycopg.Connection, contract: str, priority: int) -> Terms:
    """Terms of ``contract`` at ``priority``; a contract without its own terms gets the standard ones."""
    row = conn.execute(
        "SELECT contract, priority, response_s, resolution_s FROM sla_terms "
        "WHERE contract IN (%s, %s) AND priority = %s ORDER BY contract = %s DESC LIMIT 1",
        (contract, DEFAULT_CONTRACT, priority, contract),
    ).fetchone()
    if row is None:
        raise NotFoundError("priority", f"no SLA terms for contract {contract!r} priority {priority}")
    return Terms(*row)


def set_terms(conn: psycopg.Connection, contract: str, priority: int, response_s: int, resolution_s: int) -> None:
    if not 0 < response_s <= resolution_s:
        raise ValueError("response_s: must be positive and not above resolution_s")
    conn.execute(
        "INSERT INTO sla_terms (contract, priority, response_s, resolution_s) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (contract, priority) DO UPDATE SET response_s = excluded.response_s, "
        "resolution_s = excluded.resolution_s",
        (contract, priority, response_s, resolution_s),
    )


def deadlines(conn: psycopg.Connection, site_id: int, priority: int, start: datetime) -> tuple[datetime, datetime]:
    """(response_due, resolution_due) for a job at ``site_id`` opened at ``start``."""
    row = conn.execute(
        "SELECT c.contract FROM sites s JOIN customers c ON c.id = s.customer_id WHERE s.id = %s", (site_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError("site_id", f"site {site_id} does not exist")
    t = terms(conn, row[0], priority)
    return start + timedelta(seconds=t.response_s), start + timedelta(seconds=t.resolution_s)


def record_breach(conn: psycopg.Connection, job_id: int, kind: str, due_at: datetime, now: datetime) -> bool:
    """Record one breach of ``kind`` ('response' or 'resolution') once; True when newly recorded."""
    column = "response_breached_at" if kind == "response" else "resolution_breached_at"
    inserted = conn.execute(
        "INSERT INTO sla_breaches (job_id, kind, due_at, detected_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING job_id",
        (job_id, kind, due_at, now),
    ).fetchone()
    if inserted:
        conn.execute(
            sql.SQL("UPDATE jobs SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
            (now, job_id),
        )
        log.info("job %d: %s deadline %s breached", job_id, kind, due_at.isoformat())
        events.publish(conn, events.JOB_UPDATED, {"job_id": job_id, "reason": "sla_breach", "kind": kind,
                                                  "due_at": due_at}, job_id=job_id)
    return inserted is not None


def detect_breaches(conn: psycopg.Connection, now: datetime) -> list[tuple[int, str]]:
    """Record every deadline passed by ``now``: response when not arrived, resolution when not finished.

    Also covers jobs that arrived or finished late. Returns the newly recorded (job id, kind).
    """
    rows = conn.execute(
        "SELECT id, 'response', response_due FROM jobs WHERE response_due IS NOT NULL "
        "AND response_breached_at IS NULL AND status <> 'cancelled' "
        "AND coalesce(arrived_at, %(now)s) > response_due AND response_due < %(now)s "
        "UNION ALL "
        "SELECT id, 'resolution', resolution_due FROM jobs WHERE resolution_due IS NOT NULL "
        "AND resolution_breached_at IS NULL AND status <> 'cancelled' "
        "AND coalesce(completed_at, %(now)s) > resolution_due AND resolution_due < %(now)s "
        "ORDER BY 1, 2",
        {"now": now},
    ).fetchall()
    return [(job_id, kind) for job_id, kind, due in rows if record_breach(conn, job_id, kind, due, now)]


def refresh_at_risk(conn: psycopg.Connection) -> int:
    """Set ``at_risk`` on open, not yet arrived jobs whose planned arrival or ETA passes the response
    deadline (and clear it otherwise), publishing job.updated for each change. Returns the count."""
    changed = conn.execute(
        "UPDATE jobs SET at_risk = new.flag FROM ("
        "  SELECT id, coalesce(arrived_at IS NULL AND greatest(planned_arrival, eta) > response_due, false)"
        "    AS flag FROM jobs WHERE status = ANY(%s)) AS new "
        "WHERE jobs.id = new.id AND jobs.at_risk IS DISTINCT FROM new.flag "
        "RETURNING jobs.id, jobs.at_risk, jobs.technician_id",
        (_OPEN,),
    ).fetchall()
    for job_id, flag, technician_id in changed:
        events.publish(conn, events.JOB_UPDATED, {"job_id": job_id, "reason": "at_risk", "at_risk": flag},
                       job_id=job_id, technician_id=technician_id)
    return len(changed)
