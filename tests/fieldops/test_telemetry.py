import secrets
from datetime import timedelta

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fieldops.db import DatabaseUnavailable, schema
from fieldops.db.repo import telemetry
from tests import factories
from tests.factories import T0


@pytest.fixture
def pump(db):
    dev = factories.device(db)
    db.commit()
    return dev


def _rows(device_id, n, step_s=60, start=T0):
    return [(device_id, start + timedelta(seconds=i * step_s), i, [20.0 + i, 1.0, None]) for i in range(n)]


def test_readings_are_stored_and_read_back_in_order(db, pump):
    writer = telemetry.TelemetryWriter(db)
    assert writer.write(_rows(pump.id, 5)) == 5
    db.commit()
    got = telemetry.read_range(db, pump.id, T0, T0 + timedelta(hours=1))
    assert [r.values[0] for r in got] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert got[0].values[2] is None


def test_redelivered_readings_are_stored_once(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 5))
    db.commit()
    assert writer.write(_rows(pump.id, 7)) == 2
    db.commit()
    assert telemetry.count(db, pump.id) == 7


def test_duplicates_within_one_batch_are_stored_once(db, pump):
    writer = telemetry.TelemetryWriter(db)
    assert writer.write(_rows(pump.id, 3) + _rows(pump.id, 3)) == 3
    db.commit()
    assert telemetry.count(db, pump.id) == 3


def test_hourly_rollup_counts_means_and_extremes(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 90))  # 08:00-09:29, values 20..109
    db.commit()
    stats = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=2), metric_index=0)
    assert [(s.bucket, s.n) for s in stats] == [(T0, 60), (T0 + timedelta(hours=1), 30)]
    first = stats[0]
    assert first.mean == pytest.approx(sum(20.0 + i for i in range(60)) / 60)
    assert (first.min, first.max) == (20.0, 79.0)
    values = [20.0 + i for i in range(60)]
    mean = sum(values) / 60
    expected_sd = (sum((v - mean) ** 2 for v in values) / 59) ** 0.5
    assert first.stddev == pytest.approx(expected_sd, rel=1e-6)


def test_rollup_is_not_inflated_by_redelivery(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 10))
    db.commit()
    writer.write(_rows(pump.id, 10))
    db.commit()
    (stat,) = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=1), metric_index=0)
    assert stat.n == 10


def test_rollup_counts_only_the_new_readings_of_a_partly_redelivered_batch(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 5))
    db.commit()
    writer.write(_rows(pump.id, 7))
    db.commit()
    (stat,) = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=1), metric_index=0)
    assert (stat.n, stat.min, stat.max) == (7, 20.0, 26.0)


def test_readings_without_seq_or_with_fewer_values_are_stored_as_given(db, pump):
    writer = telemetry.TelemetryWriter(db)
    assert writer.write([(pump.id, T0, None, [1.5]), (pump.id, T0 + timedelta(minutes=1), 3, [2.5, None, 4.0]),
                         (pump.id, T0 + timedelta(minutes=2), 4, [3.5, 1.0, 2.0])]) == 3
    db.commit()
    got = telemetry.read_range(db, pump.id, T0, T0 + timedelta(hours=1))
    assert [(r.seq, r.values) for r in got] == [(None, (1.5,)), (3, (2.5, None, 4.0)), (4, (3.5, 1.0, 2.0))]


def test_rollup_merges_batches_in_the_same_hour(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 10))
    db.commit()
    writer.write(_rows(pump.id, 10, start=T0 + timedelta(minutes=30)))
    db.commit()
    (stat,) = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=1), metric_index=0)
    assert (stat.n, stat.min, stat.max) == (20, 20.0, 29.0)


def test_missing_metric_values_are_not_counted(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 10))
    db.commit()
    stats = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=1))
    assert {s.metric_index for s in stats} == {0, 1}


def test_device_range_read_is_an_index_scan(db, pump):
    telemetry.TelemetryWriter(db).write(_rows(pump.id, 100))
    db.commit()
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT * FROM telemetry WHERE device_id = %s AND ts >= %s AND ts < %s",
        (pump.id, T0, T0 + timedelta(hours=1))))
    assert "Index" in plan and "Seq Scan" not in plan


def test_refresh_rollup_rebuilds_from_raw(db, db_url, pump):
    telemetry.TelemetryWriter(db).write(_rows(pump.id, 60))
    db.commit()
    db.execute("DELETE FROM telemetry_hourly") if schema.flavor(db) is schema.Flavor.POSTGRES else None
    db.commit()
    schema.refresh_rollup(db_url, T0, T0 + timedelta(hours=1))
    (stat,) = telemetry.hourly_stats(db, [pump.id], T0, T0 + timedelta(hours=1), metric_index=0)
    assert stat.n == 60


def test_partitions_created_ahead_and_dropped_past_retention(db, pump):
    if schema.flavor(db) is schema.Flavor.TIMESCALEDB:
        pytest.skip("TimescaleDB manages chunks and retention with policies")
    db.commit()
    db.autocommit = True
    schema.maintain(db, T0, retention_days=30, ahead_days=3)
    days = schema.existing_partitions(db)
    assert {T0.date() + timedelta(days=d) for d in range(-1, 4)} <= days
    telemetry.TelemetryWriter(db).write(_rows(pump.id, 5))
    result = schema.maintain(db, T0 + timedelta(days=40), retention_days=30, ahead_days=3)
    assert result["dropped"] >= 1
    assert T0.date() not in schema.existing_partitions(db)
    assert telemetry.count(db, pump.id) == 0


def test_a_batch_with_no_stored_readings_is_copied_straight_into_the_table(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 5))
    db.commit()
    assert (writer.direct_batches, telemetry.count(db, pump.id)) == (1, 5)


def test_after_a_conflict_the_batch_is_staged_and_the_transaction_stays_usable(db, pump):
    writer = telemetry.TelemetryWriter(db)
    writer.write(_rows(pump.id, 3))
    db.commit()
    db.execute("CREATE TEMP TABLE marker (x int)")
    db.execute("INSERT INTO marker VALUES (1)")  # written in the same transaction, before the conflict
    assert writer.write(_rows(pump.id, 6)) == 3
    db.commit()
    assert (writer.direct_batches, telemetry.count(db, pump.id), db.execute("SELECT x FROM marker").fetchone()[0]) \
        == (1, 6, 1)


def test_timestamps_given_in_microseconds_store_the_same_rows(db, pump):
    rows = _rows(pump.id, 3)
    pg_epoch = T0.replace(year=2000, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    stamps = [(r[1] - pg_epoch) // timedelta(microseconds=1) for r in rows]
    telemetry.TelemetryWriter(db).write(rows, stamps)
    db.commit()
    got = telemetry.read_range(db, pump.id, T0, T0 + timedelta(hours=1))
    assert [r.ts for r in got] == [r[1] for r in rows]


def test_timestamps_in_microseconds_must_match_the_rows_one_to_one(db, pump):
    with pytest.raises(ValueError, match="ts_us"):
        telemetry.TelemetryWriter(db).write(_rows(pump.id, 3), [0, 1])


@pytest.fixture
def locked_out(db_url, pg_admin_url):
    """A connection of a role that may no longer log in (new connections are refused)."""
    import psycopg

    from tests.conftest import _with_dbname

    role = f"locked_out_{secrets.token_hex(4)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    params = conninfo_to_dict(db_url)
    try:
        with psycopg.connect(make_conninfo(**{**params, "user": role})) as conn:
            with psycopg.connect(pg_admin_url, autocommit=True) as admin:
                admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
            yield conn
    finally:
        with psycopg.connect(_with_dbname(pg_admin_url, params["dbname"]), autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def test_partition_ddl_that_cannot_connect_raises_database_unavailable(locked_out):
    if schema.flavor(locked_out) is schema.Flavor.TIMESCALEDB:
        pytest.skip("TimescaleDB creates chunks itself")
    device = factories.device(locked_out)
    writer = telemetry.TelemetryWriter(locked_out)
    with pytest.raises(DatabaseUnavailable, match="^cannot connect to the database: "):
        writer.write(_rows(device.id, 1, start=T0 + timedelta(days=3000)))
