import logging
import sys
from datetime import UTC, datetime

from fieldops.db.repo import telemetry
from simulators import seed, store
from simulators.backfill import backfill

log = logging.getLogger(__name__)
END = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def test_backfill_200_devices_30_days_at_10_minutes(db, db_url, capsys):
    seed.seed_data(db, now=END, secret="s", devices=200, technicians=2)
    db.commit()
    result = backfill(db_url, days=30, devices=200, resolution_s=600, seed=3, end=END)
    with capsys.disabled():
        sys.stdout.write(f"\nbackfill 200 devices x 30 days @10 min: {result.readings} readings, "
              f"generate {result.generate_s:.1f}s, write {result.write_s:.1f}s, "
              f"rollup {result.rollup_s:.1f}s, total "
              f"{result.generate_s + result.write_s + result.rollup_s:.1f}s\n")
    assert result.devices == 200
    assert 0.95 * 200 * 30 * 144 < result.readings <= 200 * 30 * 144
    assert telemetry.count(db) == result.readings
    assert result.failures == len(store.failures(db))
