"""The telemetry writer's columnar path (numpy binary COPY) stores exactly what it is given."""

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from fieldops.db.repo import telemetry
from fieldops.db.repo.telemetry import NO_SEQ, Columns
from tests.factories import T0

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
NAN = np.nan


def _us(ts):
    return (ts - PG_EPOCH) // timedelta(microseconds=1)


def _columns(device_id, stamps, seqs, vals, width=None):
    vals = np.array(vals, dtype=np.float64)
    return Columns(np.full(len(stamps), device_id, np.int64), np.array([_us(t) for t in stamps], np.int64),
                   np.array(seqs, np.int64), vals,
                   np.full(len(stamps), vals.shape[1] if width is None else width, np.int64))


def _stored(db, device_id):
    """(ts, seq, vals) per stored row; vals as float8 shows the exact stored float32 values."""
    db.commit()
    return db.execute("SELECT ts, seq, vals::float8[] FROM telemetry WHERE device_id = %s ORDER BY ts", (device_id,)).fetchall()


def test_values_timestamps_and_missing_seq_round_trip_exactly(db, pump):
    stamps = [T0 + timedelta(microseconds=1), T0 + timedelta(seconds=1, microseconds=999_999)]
    telemetry.TelemetryWriter(db).write_columns(_columns(pump.id, stamps, [2**62, NO_SEQ], [[0.1, 1e-30, 3.4e38]] * 2))
    as_real = [float(np.float32(v)) for v in (0.1, 1e-30, 3.4e38)]
    assert _stored(db, pump.id) == [(stamps[0], 2**62, as_real), (stamps[1], None, as_real)]


def test_missing_values_are_stored_as_null_elements(db, pump):
    telemetry.TelemetryWriter(db).write_columns(_columns(pump.id, [T0], [1], [[NAN, 2.5, NAN]]))
    assert _stored(db, pump.id)[0][2] == [None, 2.5, None]


def test_each_reading_keeps_its_own_width(db, pump):
    block = Columns.concat([_columns(pump.id, [T0], [1], [[1.0, 2.0, 3.0]]),
                            _columns(pump.id, [T0 + timedelta(seconds=1)], [2], [[4.0]])])
    telemetry.TelemetryWriter(db).write_columns(block)
    assert [vals for _, _, vals in _stored(db, pump.id)] == [[1.0, 2.0, 3.0], [4.0]]


def test_a_redelivered_block_is_stored_once_and_rolled_up_once(db, pump):
    writer = telemetry.TelemetryWriter(db)
    stamps = [T0 + timedelta(seconds=i) for i in range(10)]
    writer.write_columns(_columns(pump.id, stamps[:6], range(6), [[20.0, 1.0, 2.0]] * 6))
    db.commit()
    assert writer.write_columns(_columns(pump.id, stamps, range(10), [[20.0, 1.0, 2.0]] * 10)) == 4
    db.commit()
    hourly = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=1), metric_index=0)
    assert (len(_stored(db, pump.id)), [h.n for h in hourly]) == (10, [10])


def test_repeats_within_a_batch_keep_the_lowest_seq_and_missing_seq_last(db, pump):
    block = _columns(pump.id, [T0, T0, T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1)],
                     [5, NO_SEQ, 2, NO_SEQ, 7], [[1.0], [2.0], [3.0], [4.0], [5.0]])
    assert telemetry.TelemetryWriter(db).write_columns(block) == 2
    assert [(seq, vals) for _, seq, vals in _stored(db, pump.id)] == [(2, [3.0]), (7, [5.0])]


def test_two_writers_meeting_the_same_new_days_at_once_both_store(db_url, db, pump):
    """Partition creation for a day neither writer has seen must not refuse either one's batch."""
    days = [T0 + timedelta(days=400 + d) for d in range(12)]
    start = threading.Barrier(2)
    errors = []

    def write(first_seq):
        with psycopg.connect(db_url) as conn:
            writer = telemetry.TelemetryWriter(conn)
            for day in days:
                start.wait(10)
                try:
                    writer.write_columns(_columns(pump.id, [day + timedelta(seconds=first_seq)], [first_seq], [[1.0]]))
                    conn.commit()
                except psycopg.Error as exc:
                    conn.rollback()
                    errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(_stored(db, pump.id)) == 2 * len(days)
