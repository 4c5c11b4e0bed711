"""Telemetry reads and writes. Writes go binary COPY (encoded with numpy) straight into ``telemetry``,
or through a staging table and a deduplicating insert after a conflict."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from fieldops.db import schema
from fieldops.db.pool import connect
from fieldops.domain import Reading

Row = tuple[int, datetime, int | None, Sequence[float | None]]  # device_id, ts, seq, vals


PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's binary timestamp origin
PG_EPOCH_UNIX_US = 946_684_800_000_000  # PG_EPOCH in microseconds since 1970-01-01 UTC
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
_DAY_US = 86_400_000_000
_FLOAT4_OID = 700
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_ROW_HEAD = struct.Struct("!hiiiq")  # 4 columns; device_id; ts
_SEQ = struct.Struct("!iq")
_ARRAY_HEAD = struct.Struct("!iiiiii")  # byte length, ndim 1, has nulls, element oid, length, lower bound
_ELEMENT = struct.Struct("!if")


NO_SEQ = -1  # ``Columns.seq`` of a reading without a sequence number (stored as NULL)


@dataclass(slots=True)
class Columns:
    """Readings as numpy columns, the writer's input (``from_rows`` converts row tuples).

    ``ts_us`` is microseconds since 2000-01-01 UTC, ``seq`` is ``NO_SEQ`` where a reading has none,
    ``vals`` has one row per reading, NaN where a value is missing and past the row's ``width``
    (the number of metric slots stored for that reading).
    """

    device: np.ndarray  # int64
    ts_us: np.ndarray  # int64
    seq: np.ndarray  # int64
    vals: np.ndarray  # float64, shape (readings, widest)
    width: np.ndarray  # int64

    @classmethod
    def from_rows(cls, rows: Sequence[Row], ts_us: Sequence[int] | None = None) -> Columns:
        n = len(rows)
        if ts_us is None:
            ts_us = [(r[1] - PG_EPOCH) // _US for r in rows]
        vals = [r[3] for r in rows]
        width = np.fromiter((len(v) for v in vals), np.int64, n)
        widest = int(width.max()) if n else 0
        if widest and int(width.min()) != widest:
            vals = [list(v) + [None] * (widest - len(v)) for v in vals]
        return cls(
            np.fromiter((r[0] for r in rows), np.int64, n),
            np.array(ts_us, dtype=np.int64).reshape(n),
            np.fromiter((NO_SEQ if r[2] is None else r[2] for r in rows), np.int64, n),
            np.array(vals, dtype=np.float64).reshape(n, widest),  # None -> NaN
            width,
        )

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        if len(parts) == 1:
            return parts[0]
        widest = max(p.vals.shape[1] for p in parts)
        vals = [p.vals if p.vals.shape[1] == widest else
                np.pad(p.vals, ((0, 0), (0, widest - p.vals.shape[1])), constant_values=np.nan) for p in parts]
        return cls(np.concatenate([p.device for p in parts]), np.concatenate([p.ts_us for p in parts]),
                   np.concatenate([p.seq for p in parts]), np.concatenate(vals),
                   np.concatenate([p.width for p in parts]))

    def __len__(self) -> int:
        return len(self.device)

    def take(self, index: np.ndarray) -> Columns:
        """The readings at ``index`` (integer positions or a boolean mask)."""
        return Columns(self.device[index], self.ts_us[index], self.seq[index], self.vals[index],
                       self.width[index])


def _first_per_key(c: Columns) -> np.ndarray | None:
    """Positions keeping one reading per (device, ts), the lowest seq (no seq last) as ORDER BY
    seq would; None when every pair is unique already (vectorised: sort, compare neighbours)."""
    if len(c) < 2:
        return None
    seq_key = np.where(c.seq == NO_SEQ, np.iinfo(np.int64).max, c.seq)
    order = np.lexsort((seq_key, c.ts_us, c.device))
    d, t = c.device[order], c.ts_us[order]
    first = np.ones(len(order), bool)
    first[1:] = (d[1:] != d[:-1]) | (t[1:] != t[:-1])
    if first.all():
        return None
    return np.sort(order[first])


@dataclass(slots=True)
class _Batch:
    """One batch of readings, deduplicated on (device, ts); ``vals`` rounded to float32 (as stored)."""

    cols: Columns

    @classmethod
    def of(cls, cols: Columns) -> _Batch | None:
        if not len(cols):
            return None
        keep = _first_per_key(cols)
        if keep is not None:
            cols = cols.take(keep)
        cols.vals = cols.vals.astype(np.float32).astype(np.float64)
        return cls(cols)

    def __len__(self) -> int:
        return len(self.cols)

    def subset(self, keys: list[list[int]]) -> _Batch:
        """The rows whose (device_id, microseconds) are in ``keys`` (two parallel lists)."""
        wanted = set(zip(keys[0], keys[1], strict=True))
        c = self.cols
        mask = np.fromiter(((d, t) in wanted for d, t in zip(c.device.tolist(), c.ts_us.tolist(), strict=True)),
                           bool, len(c))
        return _Batch(c.take(mask))

    def copy_buffer(self) -> bytes:
        """The whole batch in PostgreSQL's binary COPY format (device_id, ts, seq, vals)."""
        c = self.cols
        parts = [_COPY_SIGNATURE]
        for w in np.unique(c.width).tolist():
            group = c.width == w
            missing = np.isnan(c.vals[:, :w]).any(axis=1) if w else np.zeros(len(c), bool)
            for with_seq in (True, False):
                pick = group & ~missing & ((c.seq != NO_SEQ) if with_seq else (c.seq == NO_SEQ))
                if w and pick.any():
                    parts.append(self._vectorized(np.flatnonzero(pick), w, with_seq))
            for i in np.flatnonzero(group & (missing | (w == 0))).tolist():
                seq = int(c.seq[i])
                parts.append(_encode_row(int(c.device[i]), int(c.ts_us[i]), None if seq == NO_SEQ else seq,
                                         [None if v != v else v for v in c.vals[i, :w].tolist()]))
        parts.append(_COPY_TRAILER)
        return b"".join(parts)

    def _vectorized(self, idx: np.ndarray, w: int, with_seq: bool) -> bytes:
        seq = [("l_seq", ">i4"), ("seq", ">i8")] if with_seq else [("l_seq", ">i4")]
        dtype = np.dtype([
            ("ncols", ">i2"), ("l_dev", ">i4"), ("dev", ">i4"), ("l_ts", ">i4"), ("ts", ">i8"), *seq,
            ("l_vals", ">i4"), ("ndim", ">i4"), ("nulls", ">i4"),
            ("oid", ">i4"), ("dim", ">i4"), ("lbound", ">i4"), ("elems", [("len", ">i4"), ("v", ">f4")], (w,)),
        ])
        c = self.cols
        out = np.zeros(len(idx), dtype)
        out["ncols"], out["l_dev"], out["l_ts"] = 4, 4, 8
        out["l_vals"], out["ndim"], out["oid"], out["dim"], out["lbound"] = 20 + 8 * w, 1, _FLOAT4_OID, w, 1
        out["dev"] = c.device[idx]
        out["ts"] = c.ts_us[idx]
        if with_seq:
            out["l_seq"] = 8
            out["seq"] = c.seq[idx]
        else:
            out["l_seq"] = -1
        out["elems"]["len"] = 4
        out["elems"]["v"] = c.vals[idx, :w]
        return out.tobytes()

    def hourly_rollup(self) -> Iterator[tuple]:
        """Rows of ``telemetry_hourly`` (device_id, bucket, n, then n/s/q/lo/hi per slot) for this batch."""
        c = self.cols
        hours = c.ts_us // _HOUR_US
        first = int(hours.min())
        groups, inv = np.unique((c.device << 32) | (hours - first), return_inverse=True)
        inv = inv.reshape(-1)
        g = len(groups)
        columns: list[list] = [
            (groups >> 32).tolist(),
            [PG_EPOCH + timedelta(microseconds=(first + int(h)) * _HOUR_US) for h in (groups & 0xFFFFFFFF).tolist()],
            np.bincount(inv, minlength=g).tolist(),
        ]
        for slot in range(schema.MAX_METRICS):
            if slot >= c.vals.shape[1]:
                columns += [[0] * g, [None] * g, [None] * g, [None] * g, [None] * g]
                continue
            col = c.vals[:, slot]
            ok = ~np.isnan(col)
            at, v = inv[ok], col[ok]
            n = np.bincount(at, minlength=g)
            lo, hi = np.full(g, np.inf), np.full(g, -np.inf)
            np.minimum.at(lo, at, v)
            np.maximum.at(hi, at, v)
            empty = (n == 0).tolist()
            columns.append(n.tolist())
            for figures in (np.bincount(at, v, g), np.bincount(at, v * v, g), lo, hi):
                columns.append([None if e else x for e, x in zip(empty, figures.tolist(), strict=True)])
        return zip(*columns, strict=True)


def _encode_row(device_id: int, ts_us: int, seq: int | None, vals: list[float | None]) -> bytes:
    """One row in binary COPY format, for rows with missing values (NULL array elements)."""
    elems = [_NULL if v is None else _ELEMENT.pack(4, v) for v in vals]
    head = _ROW_HEAD.pack(4, 4, device_id, 8, ts_us) + (_NULL if seq is None else _SEQ.pack(8, seq))
    if not elems:
        return head + struct.pack("!iiii", 12, 0, 0, _FLOAT4_OID)
    body = b"".join(elems)
    return head + _ARRAY_HEAD.pack(20 + len(body), 1, int(_NULL in elems), _FLOAT4_OID, len(elems), 1) + body


PARTITION_LOCK_KEY = 0x7E1E_0100  # advisory lock held while creating telemetry partitions


class TelemetryWriter:
    """Writes batches of readings on one connection; the caller owns the transaction.

    ``write`` returns how many readings were new: redelivered or repeated (device, ts) pairs are
    dropped, in the batch and against what is stored. Rows are encoded into one binary COPY buffer
    with numpy; on plain PostgreSQL the hourly rollup of exactly the inserted rows is aggregated
    here (numpy) and merged with one upsert (TimescaleDB's continuous aggregate needs nothing).

    Redeliveries are rare (after a consumer or broker fault), so a batch is first COPied straight
    into ``telemetry`` inside a savepoint; only if that hits a stored (device, ts) is it rolled
    back to the savepoint and written through the staging table, which skips the stored rows.
    After such a conflict the next ``STAGED_AFTER_CONFLICT`` batches go through staging at once
    (a redelivery burst spans several batches). A connection in autocommit mode always stages.
    """

    STAGED_AFTER_CONFLICT = 20

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._staged_left = 0  # batches still to write through staging after a conflict
        self.direct_batches = 0  # batches written by the direct COPY (for tests and metrics)
        self._flavor = schema.flavor(conn)
        self._flush = schema.flush_stage_sql(self._flavor)
        self._merge = schema.merge_rollup_stage_sql()
        self._days: set[int] = set()
        schema.create_stage(conn, self._flavor)
        if not conn.autocommit:
            conn.commit()

    def write(self, rows: Iterable[Row], ts_us: Sequence[int] | None = None) -> int:
        """Store the rows; ``ts_us``, when the caller has it, is each row's ``ts`` as microseconds
        since 2000-01-01 UTC (PostgreSQL's epoch), which saves converting the datetimes."""
        rows = list(rows)
        if ts_us is not None and len(ts_us) != len(rows):
            raise ValueError(f"ts_us: {len(ts_us)} values for {len(rows)} rows")
        return self.write_columns(Columns.from_rows(rows, ts_us))

    def write_columns(self, cols: Columns) -> int:
        """Store readings given as columns (as ``write``, without a Python object per reading)."""
        batch = _Batch.of(cols)
        if batch is None:
            return 0
        if self._flavor is schema.Flavor.POSTGRES:
            days = set(np.unique(batch.cols.ts_us // _DAY_US).tolist())
            if not days <= self._days:
                self._ensure(days)
        buffer = batch.copy_buffer()
        rollup = self._flavor is schema.Flavor.POSTGRES
        with self.conn.cursor() as cur:
            if self._direct(cur, buffer):
                inserted, keys = len(batch), None
            else:
                with cur.copy(
                    "COPY telemetry_stage (device_id, ts, seq, vals) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(buffer)
                inserted, keys = cur.execute(self._flush, (len(batch),) if rollup else None).fetchone()
                cur.execute("TRUNCATE telemetry_stage")
            if rollup and inserted:
                self._merge_rollup(cur, batch.subset(keys) if keys is not None else batch)
        return int(inserted)

    def _direct(self, cur: psycopg.Cursor, buffer: bytes) -> bool:
        """COPY the batch straight into ``telemetry``; False (and nothing written) on a conflict."""
        if self.conn.autocommit:
            return False
        if self._staged_left:
            self._staged_left -= 1
            return False
        cur.execute("SAVEPOINT telemetry_direct")
        try:
            with cur.copy("COPY telemetry (device_id, ts, seq, vals) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(buffer)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT telemetry_direct")
            self._staged_left = self.STAGED_AFTER_CONFLICT
            return False
        cur.execute("RELEASE SAVEPOINT telemetry_direct")
        self.direct_batches += 1
        return True

    def _merge_rollup(self, cur: psycopg.Cursor, batch: _Batch) -> None:
        with cur.copy(schema.COPY_ROLLUP_STAGE) as copy:
            copy.set_types(schema.ROLLUP_STAGE_TYPES)
            for row in batch.hourly_rollup():
                copy.write_row(row)
        cur.execute(self._merge)
        cur.execute("TRUNCATE telemetry_hourly_stage")

    def _ensure(self, days: set[int]) -> None:
        # Partition DDL runs on its own connection so that it commits independently of the batch.
        with connect(self.conn.info.dsn, password=self.conn.info.password, autocommit=True) as ddl:
            # CREATE TABLE IF NOT EXISTS still fails (DuplicateTable) when two writers meet a new
            # day at once, which would refuse a whole batch: one writer at a time creates them.
            ddl.execute("SELECT pg_advisory_lock(%s)", (PARTITION_LOCK_KEY,))
            schema.ensure_partitions(ddl, {(PG_EPOCH + timedelta(days=d)).date() for d in days})
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
