"""``fieldops up`` pieces that need no running system."""

from __future__ import annotations

import psycopg

from fieldops.cli import build_parser
from fieldops.up.commands import World, live_fleet_args
from fieldops.up.services import settle_shutdown_offline
from tests import factories
from tests.factories import T0


def test_restart_settles_the_last_shutdowns_offline_events_but_not_faults(
        db_url: str, db: psycopg.Connection) -> None:
    device = factories.device(db)
    for code, severity in (("offline", "warning"), ("CH-E05", "fault")):
        db.execute("INSERT INTO device_events (device_id, ts, code, severity) VALUES (%s, %s, %s, %s)",
                   (device.id, T0, code, severity))
    db.commit()
    assert settle_shutdown_offline(db_url, T0) == 1
    unhandled = db.execute("SELECT code FROM device_events WHERE handled_at IS NULL").fetchall()
    assert unhandled == [("CH-E05",)]


def test_the_demo_fleet_reads_at_the_interval_of_the_history_the_first_model_learned_from() -> None:
    args = build_parser().parse_args(["up", "--reading-interval-s", "300"])
    world = World(args.devices, args.technicians, args.history_days, args.reading_interval_s)
    assert world.history_resolution_s == 300
    assert live_fleet_args(world) == ["--interval-s", "300"]
    assert build_parser().parse_args(["up"]).reading_interval_s == World().history_resolution_s
