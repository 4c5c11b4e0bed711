from datetime import UTC, datetime

from fieldops.db.repo import catalog
from simulators import seed

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_seed_data_creates_the_requested_world_in_munich(db):
    result = seed.seed_data(db, now=NOW, secret="s", devices=30, technicians=4)
    db.commit()
    assert (result.created, result.devices, result.technicians, result.warehouses) == (True, 30, 4, 3)
    lats = [r[0] for r in db.execute("SELECT lat FROM sites")]
    lons = [r[0] for r in db.execute("SELECT lon FROM sites")]
    assert 47.8 < min(lats) and max(lats) < 48.6 and 11.0 < min(lons) and max(lons) < 12.1
    assert {d.model_code for d in catalog.devices(db)} <= {"chiller", "air_compressor", "elevator_drive"}
    skills = set().union(*(t.skills for t in catalog.technicians(db)))
    assert skills == {"electrical", "elevator", "mechanical", "refrigeration"}


def test_seed_data_runs_once(db):
    seed.seed_data(db, now=NOW, secret="s", devices=10, technicians=2)
    again = seed.seed_data(db, now=NOW, secret="s", devices=50, technicians=9)
    db.commit()
    assert again.created is False and again.devices == 10
    assert len(catalog.devices(db)) == 10


def test_every_van_and_warehouse_holds_stock(db):
    seed.seed_data(db, now=NOW, secret="s", devices=5, technicians=3)
    db.commit()
    empty = db.execute(
        "SELECT count(*) FROM stock_locations l WHERE NOT EXISTS "
        "(SELECT 1 FROM stock s WHERE s.location_id = l.id AND s.quantity > 0)"
    ).fetchone()[0]
    assert empty == 0
