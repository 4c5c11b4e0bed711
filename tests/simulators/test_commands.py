"""The ``fieldops simulate`` commands end to end."""

import json

from fieldops import cli
from fieldops.db.repo import telemetry


def run(monkeypatch, capsys, db_url, *argv):
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_ENV", "test")
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_seed_data_then_backfill_from_the_command_line(db, db_url, monkeypatch, capsys):
    seeded = run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "6", "--technicians", "3")
    again = run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "6", "--technicians", "3")
    filled = run(monkeypatch, capsys, db_url, "simulate", "backfill", "--days", "2", "--devices", "6")
    assert (seeded["created"], seeded["devices"], again["created"]) == (True, 6, False)
    assert filled["devices"] == 6 and filled["readings"] == telemetry.count(db) > 6 * 2 * 140


def test_technicians_command_runs_and_stops(db, db_url, monkeypatch, capsys):
    run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "2", "--technicians", "2")
    assert cli.main(["simulate", "technicians", "--duration-s", "0.5"]) == 0
