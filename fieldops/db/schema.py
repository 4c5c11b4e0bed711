"""The telemetry storage decision: TimescaleDB when the extension is there, plain PostgreSQL otherwise.

Everything that differs between the two paths lives in this module; repositories ask it for the
statement to run and never branch on the flavor themselves.

Layout (both paths): one row per reading, ``telemetry(device_id int, ts timestamptz, seq bigint,
vals real[])`` with primary key ``(device_id, ts)``. ``vals[i]`` is metric slot ``i`` (1-based in
SQL) of the device's model, so metrics are defined per model rather than as columns; the key makes
"one device over a time range" an index range scan and deduplicates redelivered readings; one row
per reading keeps COPY at full speed.

Hourly rollup (both paths): ``telemetry_hourly(device_id, bucket, n, n1..n8, s1..s8, q1..q8,
lo1..lo8, hi1..hi8)`` holds count, sum, sum of squares, min and max per slot, which merge
additively; the view ``telemetry_hourly_stats`` turns them into count/mean/min/max/stddev per metric.

* TimescaleDB: ``telemetry`` is a hypertable (1-day chunks, compressed after N days segmented by
  device, retention policy), ``telemetry_hourly`` a continuous aggregate with real-time
  aggregation and a refresh policy.
* Plain PostgreSQL: ``telemetry`` is range-partitioned by day; partitions are created ahead of time
  and on demand, dropped past retention; ``telemetry_hourly`` is a table updated in the same
  transaction as every insert, from exactly the rows that were inserted (the writer aggregates
  them per device and hour and merges those rows with one upsert).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import psycopg
from psycopg import sql

from fieldops.db.pool import connect
from fieldops.domain import MAX_METRICS

log = logging.getLogger(__name__)

SLOTS = range(1, MAX_METRICS + 1)
PARTITION_PREFIX = "telemetry_p"


class Flavor(StrEnum):
    TIMESCALEDB = "timescaledb"
    POSTGRES = "postgres"


# ---------------------------------------------------------------- detection


def detect_flavor(conn: psycopg.Connection) -> Flavor:
    """TimescaleDB if the extension is installed or can be created here, else plain PostgreSQL."""
    installed = conn.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if installed:
        return Flavor.TIMESCALEDB
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if not available:
        return Flavor.POSTGRES
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:  # listed but not preloaded, or not permitted
        log.warning("timescaledb is available but cannot be created (%s); using plain PostgreSQL", exc)
        return Flavor.POSTGRES
    return Flavor.TIMESCALEDB


def flavor(conn: psycopg.Connection) -> Flavor:
    """The flavor recorded when the telemetry schema was created."""
    row = conn.execute("SELECT value FROM fieldops_meta WHERE key = 'telemetry_flavor'").fetchone()
    if row is None:
        raise RuntimeError("telemetry schema not created: run `fieldops db migrate`")
    return Flavor(row[0])


# ---------------------------------------------------------------- creation


def _rollup_columns() -> list[str]:
    return [f"{p}{i}" for i in SLOTS for p in ("n", "s", "q", "lo", "hi")]


def _aggregate_select(source: str, bucket_expr: str) -> sql.Composed:
    """SELECT list computing the rollup columns from raw rows of ``source``."""
    parts = [sql.SQL("device_id"), sql.SQL(bucket_expr + " AS bucket"), sql.SQL("count(*) AS n")]
    for i in SLOTS:
        v = sql.SQL("vals[{}]").format(sql.Literal(i))
        parts += [
            sql.SQL("count({v}) AS {c}").format(v=v, c=sql.Identifier(f"n{i}")),
            sql.SQL("sum({v}::float8) AS {c}").format(v=v, c=sql.Identifier(f"s{i}")),
            sql.SQL("sum({v}::float8 * {v}::float8) AS {c}").format(v=v, c=sql.Identifier(f"q{i}")),
            sql.SQL("min({v}) AS {c}").format(v=v, c=sql.Identifier(f"lo{i}")),
            sql.SQL("max({v}) AS {c}").format(v=v, c=sql.Identifier(f"hi{i}")),
        ]
    return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(parts), sql.SQL(source))


def _stats_view() -> sql.Composed:
    per_slot = []
    for i in SLOTS:
        n, s, q = (sql.Identifier(f"{p}{i}") for p in ("n", "s", "q"))
        per_slot.append(
            sql.SQL(
                "({idx}, {n}, {s} / nullif({n}, 0), {lo}, {hi}, "
                "CASE WHEN {n} > 1 THEN sqrt(greatest(0, ({q} - {s} * {s} / {n}) / ({n} - 1))) END)"
            ).format(
                idx=sql.Literal(i - 1), n=n, s=s, q=q,
                lo=sql.Identifier(f"lo{i}"), hi=sql.Identifier(f"hi{i}"),
            )
        )
    return sql.SQL(
        "CREATE OR REPLACE VIEW telemetry_hourly_stats AS "
        "SELECT h.device_id, h.bucket, m.metric_index, m.n, m.mean, m.min, m.max, m.stddev "
        "FROM telemetry_hourly h CROSS JOIN LATERAL (VALUES {}) "
        "AS m(metric_index, n, mean, min, max, stddev) WHERE m.n > 0"
    ).format(sql.SQL(", ").join(per_slot))


TELEMETRY_COLUMNS = (
    "device_id integer NOT NULL, ts timestamptz NOT NULL, seq bigint, vals real[] NOT NULL, "
    "PRIMARY KEY (device_id, ts)"
)


def create_telemetry(
    conn: psycopg.Connection,
    chosen: Flavor,
    *,
    retention_days: int,
    compress_after_days: int,
) -> None:
    """Create ``telemetry``, ``telemetry_hourly`` and ``telemetry_hourly_stats`` for ``chosen``."""
    if chosen is Flavor.TIMESCALEDB:
        _create_timescaledb(conn, retention_days, compress_after_days)
    else:
        _create_postgres(conn)
    conn.execute(_stats_view())
    conn.execute(
        "INSERT INTO fieldops_meta (key, value) VALUES ('telemetry_flavor', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (chosen.value,),
    )
    log.info("telemetry storage: %s", chosen.value)


def _create_timescaledb(conn: psycopg.Connection, retention_days: int, compress_after_days: int) -> None:
    conn.execute(sql.SQL("CREATE TABLE telemetry ({})").format(sql.SQL(TELEMETRY_COLUMNS)))
    # The primary key (device_id, ts) already serves device range scans; skip the extra ts index.
    conn.execute(
        "SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'), "
        "create_default_indexes => false)"
    )
    conn.execute(
        "ALTER TABLE telemetry SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC')"
    )
    conn.execute(
        "SELECT add_compression_policy('telemetry', compress_after => make_interval(days => %s))",
        (compress_after_days,),
    )
    conn.execute(
        "SELECT add_retention_policy('telemetry', drop_after => make_interval(days => %s))",
        (retention_days,),
    )
    conn.execute(
        sql.SQL(
            "CREATE MATERIALIZED VIEW telemetry_hourly WITH (timescaledb.continuous, "
            "timescaledb.materialized_only = false) AS {} GROUP BY device_id, "
            "time_bucket(INTERVAL '1 hour', ts) WITH NO DATA"
        ).format(_aggregate_select("telemetry", "time_bucket(INTERVAL '1 hour', ts)"))
    )
    conn.execute(
        "SELECT add_continuous_aggregate_policy('telemetry_hourly', "
        "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', "
        "schedule_interval => INTERVAL '15 minutes')"
    )
    conn.execute("CREATE INDEX ON telemetry_hourly (device_id, bucket)")


def _create_postgres(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE telemetry ({}) PARTITION BY RANGE (ts)").format(
            sql.SQL(TELEMETRY_COLUMNS)
        )
    )
    cols = [sql.SQL("device_id integer NOT NULL"), sql.SQL("bucket timestamptz NOT NULL"),
            sql.SQL("n integer NOT NULL")]
    for i in SLOTS:
        cols += [
            sql.SQL("{} integer NOT NULL DEFAULT 0").format(sql.Identifier(f"n{i}")),
            sql.SQL("{} float8").format(sql.Identifier(f"s{i}")),
            sql.SQL("{} float8").format(sql.Identifier(f"q{i}")),
            sql.SQL("{} real").format(sql.Identifier(f"lo{i}")),
            sql.SQL("{} real").format(sql.Identifier(f"hi{i}")),
        ]
    cols.append(sql.SQL("PRIMARY KEY (device_id, bucket)"))
    conn.execute(sql.SQL("CREATE TABLE telemetry_hourly ({})").format(sql.SQL(", ").join(cols)))


# ---------------------------------------------------------------- writing


STAGE_TABLE = "telemetry_stage"


def create_stage(conn: psycopg.Connection, chosen: Flavor) -> None:
    """Per-connection staging tables that COPY writes into; emptied at every commit.

    Plain PostgreSQL also gets ``telemetry_hourly_stage``, the batch's pre-aggregated rollup rows.
    """
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
        "(device_id integer NOT NULL, ts timestamptz NOT NULL, seq bigint, vals real[] NOT NULL) "
        "ON COMMIT DELETE ROWS"
    )
    if chosen is Flavor.POSTGRES:
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS telemetry_hourly_stage (LIKE telemetry_hourly) "
            "ON COMMIT DELETE ROWS"
        )


_ROLLUP_COLUMNS = ["device_id", "bucket", "n", *_rollup_columns()]
COPY_ROLLUP_STAGE = sql.SQL("COPY telemetry_hourly_stage ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in _ROLLUP_COLUMNS)
)
ROLLUP_STAGE_TYPES = ["int4", "timestamptz", "int4"] + ["int4", "float8", "float8", "float4", "float4"] * MAX_METRICS


def merge_rollup_stage_sql() -> sql.Composed:
    """Merge ``telemetry_hourly_stage`` (one row per device and hour) into ``telemetry_hourly``."""
    sets = [sql.SQL("n = telemetry_hourly.n + excluded.n")]
    for i in SLOTS:
        n, s, q, lo, hi = (sql.Identifier(f"{p}{i}") for p in ("n", "s", "q", "lo", "hi"))
        sets += [
            sql.SQL("{c} = telemetry_hourly.{c} + excluded.{c}").format(c=n),
            sql.SQL("{c} = coalesce(telemetry_hourly.{c}, 0) + coalesce(excluded.{c}, 0)").format(c=s),
            sql.SQL("{c} = coalesce(telemetry_hourly.{c}, 0) + coalesce(excluded.{c}, 0)").format(c=q),
            sql.SQL("{c} = least(telemetry_hourly.{c}, excluded.{c})").format(c=lo),
            sql.SQL("{c} = greatest(telemetry_hourly.{c}, excluded.{c})").format(c=hi),
        ]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _ROLLUP_COLUMNS)
    return sql.SQL(
        "INSERT INTO telemetry_hourly ({cols}) SELECT {cols} FROM telemetry_hourly_stage "
        "ORDER BY device_id, bucket ON CONFLICT (device_id, bucket) DO UPDATE SET {sets}"
    ).format(cols=columns, sets=sql.SQL(", ").join(sets))


_INSERT_FROM_STAGE = (
    "INSERT INTO telemetry (device_id, ts, seq, vals) "
    "SELECT device_id, ts, seq, vals FROM telemetry_stage ORDER BY device_id, ts "
    "ON CONFLICT (device_id, ts) DO NOTHING RETURNING device_id, ts"
)


def flush_stage_sql(chosen: Flavor) -> sql.Composable:
    """Move staged rows (unique per device and ts) into telemetry, skipping those already stored.

    The result is one row: the inserted count, and NULL or the inserted keys. On TimescaleDB the
    continuous aggregate does the rollup, so the keys are never needed (and the statement takes
    no parameter). On plain PostgreSQL the statement takes the number of staged rows; when fewer
    were inserted (redeliveries), the second column holds the inserted keys as
    ``[[device_id, ...], [microseconds since 2000-01-01 UTC, ...]]`` so that the caller merges exactly
    those rows into the hourly rollup (``merge_rollup_stage_sql``).
    """
    if chosen is Flavor.TIMESCALEDB:
        return sql.SQL("WITH inserted AS ({}) SELECT count(*), NULL::bigint[] FROM inserted").format(
            sql.SQL(_INSERT_FROM_STAGE)
        )
    return sql.SQL(
        "WITH inserted AS ({ins}) SELECT count(*), CASE WHEN count(*) < %s THEN ("
        "SELECT ARRAY[array_agg(device_id::bigint), array_agg((extract(epoch FROM "
        "ts - TIMESTAMPTZ '2000-01-01 00:00+00') * 1000000)::bigint)] FROM inserted) END FROM inserted"
    ).format(ins=sql.SQL(_INSERT_FROM_STAGE))


# ---------------------------------------------------------------- partitions and maintenance


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def existing_partitions(conn: psycopg.Connection) -> set[date]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'telemetry'"
    ).fetchall()
    days = set()
    for (name,) in rows:
        if name.startswith(PARTITION_PREFIX):
            days.add(datetime.strptime(name[len(PARTITION_PREFIX):], "%Y%m%d").date())
    return days


def ensure_partitions(conn: psycopg.Connection, days: set[date] | list[date]) -> int:
    """Create the daily partitions for ``days`` that do not exist yet (plain path only)."""
    if flavor(conn) is Flavor.TIMESCALEDB:
        return 0
    missing = sorted(set(days) - existing_partitions(conn))
    for day in missing:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF telemetry FOR VALUES FROM ({}) TO ({})"
            ).format(
                sql.Identifier(partition_name(day)),
                sql.Literal(start),
                sql.Literal(start + timedelta(days=1)),
            )
        )
    return len(missing)


def maintain(
    conn: psycopg.Connection, now: datetime, *, retention_days: int, ahead_days: int
) -> dict[str, int]:
    """Create partitions ahead and drop those past retention (plain path; TimescaleDB has policies)."""
    if flavor(conn) is Flavor.TIMESCALEDB:
        return {"created": 0, "dropped": 0}
    today = now.astimezone(UTC).date()
    created = ensure_partitions(conn, [today + timedelta(days=d) for d in range(-1, ahead_days + 1)])
    cutoff = today - timedelta(days=retention_days)
    dropped = 0
    for day in sorted(existing_partitions(conn)):
        if day < cutoff:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partition_name(day))))
            conn.execute(
                "DELETE FROM telemetry_hourly WHERE bucket >= %s AND bucket < %s",
                (datetime(day.year, day.month, day.day, tzinfo=UTC),
                 datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)),
            )
            dropped += 1
    return {"created": created, "dropped": dropped}


def refresh_rollup(conninfo: str, start: datetime, end: datetime) -> None:
    """Recompute the hourly rollup for ``[start, end)`` from raw telemetry.

    For bulk loads that bypass the normal write path. TimescaleDB refreshes its continuous
    aggregate (which must run outside a transaction); plain PostgreSQL rebuilds the rows.
    """
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) != end:
        end = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    with connect(conninfo, autocommit=True) as conn:
        if flavor(conn) is Flavor.TIMESCALEDB:
            conn.execute("CALL refresh_continuous_aggregate('telemetry_hourly', %s, %s)", (start, end))
            return
        with conn.transaction():
            conn.execute(
                "DELETE FROM telemetry_hourly WHERE bucket >= %s AND bucket < %s",
                (start, end),
            )
            columns = sql.SQL(", ").join(
                sql.Identifier(c) for c in ["device_id", "bucket", "n", *_rollup_columns()]
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO telemetry_hourly ({cols}) {agg} WHERE ts >= %s AND ts < %s "
                    "GROUP BY 1, 2"
                ).format(
                    cols=columns,
                    agg=_aggregate_select(
                        "telemetry",
                        "date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00+00')",
                    ),
                ),
                (start, end),
            )
