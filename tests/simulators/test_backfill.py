import logging
import sys
from datetime import UTC, datetime

from fieldops.db.repo import telemetry
from simulators import seed, store
from simulators.backfill import BATCH_ROWS, backfill

log = logging.getLogger(__name__)
END = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DEVICES = 30


def test_backfill_30_devices_30_days_at_10_minutes(db, db_url, capsys):
    # 30 x 30 x 144 readings: more than one write batch (BATCH_ROWS); bench.backfill covers 200 devices
    seed.seed_data(db, now=END, secret="s", devices=DEVICES, technicians=2)
    db.commit()
    result = backfill(db_url, days=30, devices=DEVICES, resolution_s=600, seed=3, end=END)
    assert result.readings > BATCH_ROWS
    with capsys.disabled():
        sys.stdout.write(f"\nbackfill {DEVICES} devices x 30 days @10 min: {result.readings} readings, "
              f"generate {result.generate_s:.1f}s, write {result.write_s:.1f}s, "
              f"rollup {result.rollup_s:.1f}s, total "
              f"{result.generate_s + result.write_s + result.rollup_s:.1f}s\n")
    assert result.devices == DEVICES
    assert 0.95 * DEVICES * 30 * 144 < result.readings <= DEVICES * 30 * 144
    assert telemetry.count(db) == result.readings
    assert result.failures == len(store.failures(db))


def test_backfilled_repairs_are_completed_jobs_with_matching_findings(db, db_url):
    from simulators.history import JobHistory

    seed.seed_data(db, now=END, secret="s", devices=40, technicians=6)
    db.commit()
    result = backfill(db_url, days=60, devices=40, resolution_s=1800, seed=3, end=END, recorder=JobHistory(db))
    db.rollback()
    truth = {(r.device_id, r.job_id): r for r in store.repairs(db)}
    rows = db.execute(
        "SELECT device_id, id, status, finding, finding_mode FROM jobs "
        "WHERE type = 'repair' AND status IN ('completed', 'unresolved')"
    ).fetchall()
    assert result.failures > 0 and rows
    for device_id, job_id, status, finding, mode in rows:
        restored = truth[(device_id, job_id)].restored_mode
        if status == "completed":
            assert (finding, mode) == ("fault_confirmed", restored)
        else:
            assert restored is None


def test_each_backfilled_failure_is_a_fault_event_with_its_mode(db, db_url):
    seed.seed_data(db, now=END, secret="s", devices=30, technicians=2)
    db.commit()
    backfill(db_url, days=60, devices=30, resolution_s=1800, seed=5, end=END)
    truth = {(f.device_id, f.failed_at): f for f in store.failures(db)}
    events = db.execute("SELECT device_id, ts, code, severity, payload, handled_at FROM device_events").fetchall()
    assert truth and len(events) == len(truth)
    for device_id, ts, code, severity, payload, handled_at in events:
        failure = truth[(device_id, ts)]
        assert (code, severity, payload["mode"]) == (failure.fault_code, "fault", failure.mode)
        if failure.repaired_at is not None:
            assert handled_at is not None
