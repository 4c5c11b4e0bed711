"""Telemetry reads and writes. Writes go COPY -> staging table -> deduplicating insert."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg

from fieldops.db import schema
from fieldops.domain import Reading

Row = tuple[int, datetime, int | None, Sequence[float | None]]  # device_id, ts, seq, vals


class TelemetryWriter:
    """Writes batches of readings on one connection; the caller owns the transaction.

    ``write`` returns how many readings were new: redelivered or repeated (device, ts) pairs are
    dropped, in the batch and against what is stored.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._flavor = schema.flavor(conn)
        self._flush = schema.flush_stage_sql(self._flavor)
        self._days: set[date] = set()
        schema.create_stage(conn)
        if not conn.autocommit:
            conn.commit()

    def write(self, rows: Iterable[Row]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        days = {ts.astimezone(UTC).date() for _, ts, _, _ in rows}
        if self._flavor is schema.Flavor.POSTGRES and not days <= self._days:
            self._ensure(days)
        with self.conn.cursor() as cur:
            with cur.copy(
                "COPY telemetry_stage (device_id, ts, seq, vals) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "timestamptz", "int8", "float4[]"])
                for row in rows:
                    copy.write_row(row)
            inserted = cur.execute(self._flush).fetchone()[0]
            cur.execute("TRUNCATE telemetry_stage")
        return int(inserted)

    def _ensure(self, days: set[date]) -> None:
        # Partition DDL runs on its own connection so that it commits independently of the batch.
        with psycopg.connect(self.conn.info.dsn, password=self.conn.info.password, autocommit=True) as ddl:
            schema.ensure_partitions(ddl, days)
        self._days |= days


def read_range(conn: psycopg.Connection, device_id: int, start: datetime, end: datetime) -> list[Reading]:
    """All readings of one device in ``[start, end)``, oldest first (an index range scan)."""
    rows = conn.execute(
        "SELECT device_id, ts, vals, seq FROM telemetry WHERE device_id = %s AND ts >= %s AND ts < %s "
        "ORDER BY ts",
        (device_id, start, end),
    ).fetchall()
    return [Reading(d, ts, tuple(vals), seq) for d, ts, vals, seq in rows]


def count(conn: psycopg.Connection, device_id: int | None = None) -> int:
    if device_id is None:
        return int(conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])
    return int(conn.execute("SELECT count(*) FROM telemetry WHERE device_id = %s", (device_id,)).fetchone()[0])


@dataclass(frozen=True, slots=True)
class HourlyStat:
    device_id: int
    bucket: datetime
    metric_index: int
    n: int
    mean: float
    min: float
    max: float
    stddev: float | None


def hourly_stats(
    conn: psycopg.Connection,
    device_ids: Sequence[int],
    start: datetime,
    end: datetime,
    metric_index: int | None = None,
) -> list[HourlyStat]:
    """Hourly count/mean/min/max/stddev per device and metric in ``[start, end)``."""
    rows = conn.execute(
        "SELECT device_id, bucket, metric_index, n, mean, min, max, stddev "
        "FROM telemetry_hourly_stats WHERE device_id = ANY(%s) AND bucket >= %s AND bucket < %s "
        "AND (%s::int IS NULL OR metric_index = %s::int) ORDER BY device_id, bucket, metric_index",
        (list(device_ids), start, end, metric_index, metric_index),
    ).fetchall()
    return [HourlyStat(*r) for r in rows]
