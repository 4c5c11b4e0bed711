"""``fieldops dispatch plan`` and ``override`` on a real database."""

from __future__ import annotations

import argparse
import json

import psycopg
import pytest

from dispatch.commands import cmd_override, cmd_plan
from fieldops.clock import utcnow
from fieldops.config import Settings
from fieldops.domain import GeoPoint, JobSource
from fieldops.service import jobs
from tests import factories
from tests.factories import T0


def _settings(db_url: str) -> Settings:
    return Settings(env="test", database_url=db_url, clock_anchor=f"{utcnow().isoformat()}/{T0.isoformat()}")


def test_plan_command_prints_routes_and_refused_override_exits_1(
        db_url: str, db: psycopg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    device = factories.device(db)
    ada = factories.technician(db)
    bob = factories.technician(db, "Bob", ("electrical",), GeoPoint(48.2, 11.6))
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=device.id,
                                              required_skills=frozenset({"mechanical"})),
                          actor="cc", now=T0)
    db.commit()
    settings = _settings(db_url)
    refused = argparse.Namespace(action="assign", job_id=job.id, technician=bob.id, position=None,
                                 force=False, actor="disp")
    assert cmd_override(refused, settings) == 1
    assert "lacks skill mechanical" in capsys.readouterr().err
    assert cmd_plan(argparse.Namespace(time_limit=1.0), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["routes"][str(ada.id)] == [job.id] and out["unassigned"] == {}
