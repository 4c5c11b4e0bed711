"""The ``fieldops simulate`` commands end to end."""

import json

import pytest

from fieldops import cli
from fieldops.clock import utcnow
from fieldops.config import Settings
from fieldops.db.repo import catalog, telemetry
from fieldops.service import jobs


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


def test_technicians_command_runs_in_process_and_stops(db, db_url, monkeypatch, capsys):
    run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "2", "--technicians", "2")
    assert cli.main(["simulate", "technicians", "--in-process", "--duration-s", "0.5"]) == 0


def test_technicians_over_http_need_the_demo_password(db, db_url, monkeypatch, capsys):
    run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "2", "--technicians", "2")
    monkeypatch.delenv("FIELDOPS_DEMO_PASSWORD", raising=False)
    assert cli.main(["simulate", "technicians", "--duration-s", "0.5"]) == 2
    assert "FIELDOPS_DEMO_PASSWORD" in capsys.readouterr().err


def test_technicians_command_signs_in_to_the_web_url_with_the_demo_accounts(db, db_url, monkeypatch, capsys):
    from tests.simulators.test_web_technicians import MONDAY_9, failed_job, serve
    from web.app import close_app

    run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "2", "--technicians", "1")
    assert cli.main(["web-user", "demo", "--password", "demo-password-2"]) == 0
    tech, device = catalog.technicians(db)[0], catalog.devices(db)[0]
    job = failed_job(db, tech, device)
    srv, app = serve(Settings(env="test", database_url=db_url, secret_key="t" * 40, db_pool_max=2))
    monkeypatch.setenv("FIELDOPS_DEMO_PASSWORD", "demo-password-2")
    monkeypatch.setenv("FIELDOPS_CLOCK_SPEED", "60")
    monkeypatch.setenv("FIELDOPS_CLOCK_ANCHOR", f"{utcnow().isoformat()}/{MONDAY_9.isoformat()}")
    try:
        assert cli.main(["simulate", "technicians", "--web-url", f"http://127.0.0.1:{srv.server_port}",
                         "--duration-s", "3"]) == 0
    finally:
        srv.shutdown()
        close_app(app)
    db.commit()
    assert ("en_route", f"user:tech{tech.id}") in [(e.to_status, e.actor) for e in jobs.job_events(db, job.id)]


def _fleet_with_passwords(monkeypatch, db_url, path) -> int:
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_ENV", "test")
    return cli.main(["simulate", "fleet", "--passwords", str(path), "--duration-s", "0.1"])


def test_fleet_refuses_a_missing_passwords_file(db_url, tmp_path, monkeypatch, capsys):
    assert _fleet_with_passwords(monkeypatch, db_url, tmp_path / "none.json") == 2
    assert "none.json: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{oops", "[1, 2]", '{"a": 1}'])
def test_fleet_refuses_a_passwords_file_that_is_not_a_json_object_of_passwords(
        db_url, tmp_path, monkeypatch, capsys, content):
    path = tmp_path / "pw.json"
    path.write_text(content)
    assert _fleet_with_passwords(monkeypatch, db_url, path) == 2
    assert "--passwords" in capsys.readouterr().err


def test_fleet_refuses_a_passwords_file_without_some_devices(db, db_url, tmp_path, monkeypatch, capsys):
    run(monkeypatch, capsys, db_url, "simulate", "seed-data", "--devices", "2", "--technicians", "1")
    path = tmp_path / "pw.json"
    path.write_text("{}")
    assert _fleet_with_passwords(monkeypatch, db_url, path) == 2
    assert "no password for 2 device(s)" in capsys.readouterr().err
