"""Preventive plans open jobs ahead of time, every N days or N run hours."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from fieldops.domain import JobSource, JobStatus, JobType
from fieldops.service import jobs, preventive
from fieldops.service.errors import ServiceError
from tests.factories import T0
from tests.service.conftest import World

INSTALLED = T0 - timedelta(days=100)


@pytest.fixture
def pump(db: psycopg.Connection, world: World) -> World:
    db.execute("UPDATE devices SET installed_at = %s WHERE id = %s", (INSTALLED, world.device.id))
    return world


def test_calendar_plan_opens_job_within_lead_time(db: psycopg.Connection, pump: World) -> None:
    preventive.add_plan(db, "pump", "service", "Annual service", skill="mechanical", duration_s=3600,
                        every_days=105, lead_days=7)
    (job,) = preventive.open_due_jobs(db, T0)
    assert (job.source, job.type, job.device_id, job.failure_mode) == (
        JobSource.PREVENTIVE_SCHEDULE, JobType.PREVENTIVE, pump.device.id, "pm:service")
    assert job.evidence[0]["due_at"] == (INSTALLED + timedelta(days=105)).isoformat()


def test_calendar_plan_waits_before_lead_time(db: psycopg.Connection, pump: World) -> None:
    preventive.add_plan(db, "pump", "service", "Service", skill="mechanical", duration_s=3600,
                        every_days=120, lead_days=7)
    assert preventive.open_due_jobs(db, T0) == []


def test_calendar_plan_opens_once_per_cycle(db: psycopg.Connection, pump: World) -> None:
    preventive.add_plan(db, "pump", "service", "Service", skill="mechanical", duration_s=3600,
                        every_days=105, lead_days=7)
    (job,) = preventive.open_due_jobs(db, T0)
    jobs.transition(db, job.id, JobStatus.CANCELLED, expected_version=job.version, actor="t", now=T0)
    assert preventive.open_due_jobs(db, T0 + timedelta(days=1)) == []
    assert preventive.open_due_jobs(db, T0 + timedelta(days=102)) == []  # next due T0 + 110 d
    assert len(preventive.open_due_jobs(db, T0 + timedelta(days=104))) == 1


def test_run_hour_plan_opens_near_the_mark(db: psycopg.Connection, pump: World) -> None:
    # 100 days installed, 1200 run hours: 0.5 run hours per hour, so 7 days lead = 84 run hours.
    db.execute("UPDATE devices SET run_hours = 1200 WHERE id = %s", (pump.device.id,))
    preventive.add_plan(db, "pump", "oil", "Oil change", skill="mechanical", duration_s=1800,
                        every_run_hours=1250, lead_days=7)
    (job,) = preventive.open_due_jobs(db, T0)
    assert job.evidence[0]["due_at"] == (T0 + timedelta(hours=100)).isoformat()


def test_run_hour_plan_waits_far_from_the_mark(db: psycopg.Connection, pump: World) -> None:
    db.execute("UPDATE devices SET run_hours = 1000 WHERE id = %s", (pump.device.id,))
    preventive.add_plan(db, "pump", "oil", "Oil change", skill="mechanical", duration_s=1800,
                        every_run_hours=1250, lead_days=7)
    assert preventive.open_due_jobs(db, T0) == []


def test_plan_without_interval_names_every_days(db: psycopg.Connection, pump: World) -> None:
    with pytest.raises(ServiceError) as err:
        preventive.add_plan(db, "pump", "x", "X", skill="mechanical", duration_s=60)
    assert err.value.field == "every_days"


def test_plan_for_unknown_model_names_model(db: psycopg.Connection, pump: World) -> None:
    with pytest.raises(ServiceError) as err:
        preventive.add_plan(db, "turbine", "x", "X", skill="mechanical", duration_s=60, every_days=30)
    assert err.value.field == "model_code"
