"""The ``fieldops jobs`` command against a real database."""

from __future__ import annotations

import json

import psycopg
import pytest

from fieldops.cli import main
from tests.factories import T0
from tests.service.conftest import World
from tests.service.test_device_events import device_event


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_ENV", "test")


def lines(capsys: pytest.CaptureFixture) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_create_then_list(cli_env, world: World, capsys) -> None:
    assert main(["jobs", "create", "--device", world.device.serial, "--mode", "bearing_wear", "--priority", "2"]) == 0
    (created,) = lines(capsys)
    assert main(["jobs", "list"]) == 0
    (listed,) = lines(capsys)
    assert (listed["id"], listed["priority"], listed["required_skills"]) == (created["id"], 2, ["mechanical"])


def test_stale_transition_reports_version_field(cli_env, world: World, capsys) -> None:
    main(["jobs", "create", "--device", world.device.serial])
    (created,) = lines(capsys)
    main(["jobs", "transition", str(created["id"]), "cancelled", "--version", "1"])
    capsys.readouterr()
    assert main(["jobs", "transition", str(created["id"]), "cancelled", "--version", "1"]) == 2
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["field"] == "version"


def test_process_events_opens_reactive_job(cli_env, db: psycopg.Connection, world: World, capsys) -> None:
    device_event(db, world.device.id, "E1", "fault", at=T0)
    db.commit()
    assert main(["jobs", "process-events"]) == 0
    (cycle,) = lines(capsys)
    assert (cycle["events"], cycle["created"]) == (1, 1)


def test_kpis_command_without_finished_jobs_emits_nothing(cli_env, world: World, capsys) -> None:
    assert main(["jobs", "kpis", "--by", "technician"]) == 0
    assert lines(capsys) == []
