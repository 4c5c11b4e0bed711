"""SQL of the ingest consumer and of device provisioning: devices, status, events, dead letters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """What the consumer needs to know about a device to check its messages."""

    id: int
    serial: str
    model_code: str
    installed_at: datetime
    installed_ms: int = field(init=False, compare=False)  # first epoch millisecond not before it

    def __post_init__(self) -> None:
        ms = -((datetime(1970, 1, 1, tzinfo=UTC) - self.installed_at) // timedelta(milliseconds=1))
        object.__setattr__(self, "installed_ms", ms)


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    received_at: datetime
    kind: str  # 'message' or 'reading'
    topic: str
    reason: str
    payload: bytes
    payload_size_bytes: int


@dataclass(frozen=True, slots=True)
class SeenRow:
    """The newest reading of one device in a batch."""

    device_id: int
    ts: datetime
    seq: int | None


@dataclass(frozen=True, slots=True)
class StatusChange:
    device_id: int
    status: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class EventRow:
    device_id: int
    ts: datetime
    code: str
    severity: str
    payload: Mapping[str, Any]


def device_refs(conn: psycopg.Connection, serials: Iterable[str] | None = None) -> dict[str, DeviceRef]:
    """Devices by serial (all of them, or those named)."""
    query = (
        "SELECT d.id, d.serial, m.code, d.installed_at FROM devices d "
        "JOIN device_models m ON m.id = d.model_id"
    )
    if serials is None:
        rows = conn.execute(query).fetchall()
    else:
        rows = conn.execute(query + " WHERE d.serial = ANY(%s)", (list(serials),)).fetchall()
    return {r[1]: DeviceRef(*r) for r in rows}


def insert_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetterRow]) -> None:
    if not letters:
        return
    with conn.cursor() as cur, cur.copy(
        "COPY dead_letters (received_at, kind, topic, reason, payload, payload_size_bytes) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["timestamptz", "text", "text", "text", "bytea", "int4"])
        for d in letters:
            copy.write_row((d.received_at, d.kind, d.topic, d.reason, d.payload, d.payload_size_bytes))


def mark_seen(conn: psycopg.Connection, seen: Sequence[SeenRow]) -> list[StatusChange]:
    """Advance last_seen/last_seq; a device not online whose reading is newer than its last status
    change becomes online. Returns those status changes."""
    if not seen:
        return []
    rows = conn.execute(
        "WITH v AS (SELECT * FROM unnest(%s::int[], %s::timestamptz[], %s::bigint[]) AS v(id, ts, seq)), "
        "old AS (SELECT d.id, d.status FROM devices d JOIN v ON v.id = d.id ORDER BY d.id FOR NO KEY UPDATE OF d) "
        "UPDATE devices d SET "
        "last_seen = greatest(d.last_seen, v.ts), "
        "last_seq = CASE WHEN d.last_seen IS NULL OR v.ts >= d.last_seen THEN coalesce(v.seq, d.last_seq) "
        "ELSE d.last_seq END, "
        "status = CASE WHEN d.status <> 'online' AND (d.status_changed_at IS NULL OR v.ts > d.status_changed_at) "
        "THEN 'online' ELSE d.status END, "
        "status_changed_at = CASE WHEN d.status <> 'online' AND (d.status_changed_at IS NULL "
        "OR v.ts > d.status_changed_at) THEN v.ts ELSE d.status_changed_at END "
        "FROM v JOIN old ON old.id = v.id WHERE d.id = v.id "
        "RETURNING d.id, old.status, d.status, d.status_changed_at",
        ([s.device_id for s in seen], [s.ts for s in seen], [s.seq for s in seen]),
    ).fetchall()
    return [StatusChange(r[0], r[2], r[3]) for r in rows if r[1] != r[2]]


def set_status(conn: psycopg.Connection, change: StatusChange) -> bool:
    """Apply a reported status unless a newer one is stored; True if the status changed."""
    row = conn.execute(
        "WITH old AS (SELECT id, status FROM devices WHERE id = %s FOR UPDATE) "
        "UPDATE devices d SET status = %s, status_changed_at = %s, "
        "last_seen = CASE WHEN %s = 'online' THEN greatest(d.last_seen, %s) ELSE d.last_seen END "
        "FROM old WHERE d.id = old.id AND (d.status_changed_at IS NULL OR d.status_changed_at <= %s) "
        "RETURNING old.status",
        (change.device_id, change.status, change.ts, change.status, change.ts, change.ts),
    ).fetchone()
    return row is not None and row[0] != change.status


def insert_events(conn: psycopg.Connection, events: Sequence[EventRow]) -> list[tuple[int, EventRow]]:
    """Store device events, skipping redelivered ones; returns (id, event) of those stored now."""
    stored = []
    for e in events:
        row = conn.execute(
            "INSERT INTO device_events (device_id, ts, code, severity, payload) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id, ts, code) DO NOTHING RETURNING id",
            (e.device_id, e.ts, e.code, e.severity, Jsonb(dict(e.payload))),
        ).fetchone()
        if row is not None:
            stored.append((int(row[0]), e))
    return stored


def dead_letter_count(conn: psycopg.Connection, kind: str | None = None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dead_letters WHERE %s::text IS NULL OR kind = %s::text", (kind, kind)
    ).fetchone()
    return int(row[0])


def dead_letter_reasons(conn: psycopg.Connection, kind: str | None = None) -> list[str]:
    rows = conn.execute(
        "SELECT reason FROM dead_letters WHERE %s::text IS NULL OR kind = %s::text ORDER BY id",
        (kind, kind),
    ).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------- provisioning


def set_password_hash(conn: psycopg.Connection, serial: str, password_hash: str) -> None:
    conn.execute("UPDATE devices SET mqtt_password_hash = %s WHERE serial = %s", (password_hash, serial))


def password_hashes(conn: psycopg.Connection) -> dict[str, str]:
    """MQTT password hash of every device that has one, by serial."""
    rows = conn.execute(
        "SELECT serial, mqtt_password_hash FROM devices WHERE mqtt_password_hash IS NOT NULL"
    ).fetchall()
    return dict(rows)
