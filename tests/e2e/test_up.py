"""``fieldops up`` pieces that need no running system."""

from __future__ import annotations

import psycopg

from fieldops.cli import build_parser
from fieldops.db.repo import telemetry
from fieldops.up import commands
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


def _steps_run(monkeypatch) -> list[str]:
    """The titles of the preparation steps ``up`` runs from now on (none is run)."""
    titles: list[str] = []
    monkeypatch.setattr(commands, "_run_step", lambda title, *args, **kwargs: titles.append(title))
    return titles


def test_seeding_is_skipped_when_the_database_has_devices(db_url, db, monkeypatch) -> None:
    factories.device(db)
    db.commit()
    steps = _steps_run(monkeypatch)
    commands.seed_if_empty(db_url, {}, World())
    assert steps == []


def test_history_and_an_active_model_in_place_leave_only_the_demo_accounts_to_make(
        db_url, db, monkeypatch) -> None:
    pump = factories.device(db)
    telemetry.TelemetryWriter(db).write([(pump.id, T0, 0, [20.0, 1.0, None])])
    db.execute("INSERT INTO model_registry (estimator, horizon_h, artifact, sha256, active) "
               "VALUES ('random_forest', 72, '\\x00', repeat('0', 64), true)")
    db.commit()
    steps = _steps_run(monkeypatch)
    commands.prepare_history(db_url, {}, World(), "demo-password")
    assert steps == ["creating demo users"]


def test_an_empty_database_gets_history_a_first_model_and_the_demo_accounts(db_url, monkeypatch) -> None:
    steps = _steps_run(monkeypatch)
    commands.prepare_history(db_url, {}, World(), "demo-password")
    assert steps == ["backfilling 30 days of history", "training the first failure model", "creating demo users"]
