"""Domain events: an append-only ``events`` table plus a NOTIFY, so live pages resume by position.

Producers call :func:`publish` inside their own transaction: the event exists exactly when the
change it describes has committed (PostgreSQL delivers NOTIFY on commit). Ids are taken at
insert, so they may commit out of order; ``commit_seq`` (migration 0602) is stamped at commit in
commit order, and readers that must not miss a late commit follow it (:func:`committed_since`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from fieldops.db.pool import connect

log = logging.getLogger(__name__)

CHANNEL = "fieldops_events"

# Event kinds used across the system. Payloads are small JSON objects.
JOB_CREATED = "job.created"
JOB_UPDATED = "job.updated"
JOB_STATUS = "job.status"
PLAN_CHANGED = "plan.changed"
TECHNICIAN_POSITION = "technician.position"
DEVICE_STATUS = "device.status"
DEVICE_FAULT = "device.fault"
PREDICTION = "prediction"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    payload: Mapping[str, Any]
    created_at: datetime
    technician_id: int | None = None
    job_id: int | None = None
    commit_seq: int | None = None


def publish(
    conn: psycopg.Connection,
    kind: str,
    payload: Mapping[str, Any],
    *,
    technician_id: int | None = None,
    job_id: int | None = None,
) -> int:
    """Append an event in the caller's transaction and notify listeners on commit."""
    row = conn.execute(
        "INSERT INTO events (kind, payload, technician_id, job_id) VALUES (%s, %s, %s, %s) "
        "RETURNING id",
        (kind, json.dumps(payload, default=str), technician_id, job_id),
    ).fetchone()
    event_id = int(row[0])
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(event_id)))
    return event_id


def since(conn: psycopg.Connection, after_id: int, limit: int = 500) -> list[Event]:
    """Events with id greater than ``after_id``, oldest first."""
    rows = conn.execute(
        "SELECT id, kind, payload, created_at, technician_id, job_id FROM events "
        "WHERE id > %s ORDER BY id LIMIT %s",
        (after_id, limit),
    ).fetchall()
    return [Event(*row) for row in rows]


def committed_since(conn: psycopg.Connection, after_seq: int, limit: int = 500) -> list[Event]:
    """Events committed after commit position ``after_seq``, in commit order."""
    rows = conn.execute(
        "SELECT id, kind, payload, created_at, technician_id, job_id, commit_seq FROM events "
        "WHERE commit_seq > %s ORDER BY commit_seq LIMIT %s",
        (after_seq, limit),
    ).fetchall()
    return [Event(*row) for row in rows]


def last_commit_seq(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(commit_seq), 0) FROM events").fetchone()
    return int(row[0])


def last_id(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(row[0])


def listen(conninfo: str, timeout_s: float = 1.0) -> Iterator[int | None]:
    """Yield event ids as they are notified; yields None once listening (to catch up on what
    committed before) and then every ``timeout_s`` without a notification.

    Uses its own autocommit connection; stop by closing the generator.
    """
    with connect(conninfo, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield None
        while True:
            got = False
            for note in conn.notifies(timeout=timeout_s, stop_after=1):
                got = True
                try:
                    yield int(note.payload)
                except ValueError:
                    log.warning("ignoring malformed notification %r", note.payload)
            if not got:
                yield None
