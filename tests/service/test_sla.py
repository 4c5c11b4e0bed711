"""SLA deadlines from contract terms, breach detection, at-risk flags."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from fieldops import events
from fieldops.domain import JobSource, JobStatus, Priority
from fieldops.service import jobs, sla
from tests import factories
from tests.factories import T0
from tests.service.conftest import World

H = timedelta(hours=1)


def open_job(db: psycopg.Connection, device_id: int, priority: int = Priority.CRITICAL, now=T0) -> jobs.Job:
    return jobs.create_job(db, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=device_id, priority=priority),
                           actor="cc", now=now)


@pytest.mark.parametrize(("priority", "response_h", "resolution_h"), [(1, 4, 24), (2, 8, 48), (3, 24, 72), (4, 72, 168)])
def test_standard_contract_deadlines(db: psycopg.Connection, world: World, priority: int, response_h: int,
                                     resolution_h: int) -> None:
    job = open_job(db, world.device.id, priority)
    assert (job.response_due, job.resolution_due) == (T0 + response_h * H, T0 + resolution_h * H)


def test_premium_contract_is_faster(db: psycopg.Connection) -> None:
    site = factories.site(db, "Hospital", contract="premium")
    device = factories.device(db, "pump-h1", site_id=site.id)
    job = open_job(db, device.id)
    assert (job.response_due, job.resolution_due) == (T0 + 2 * H, T0 + 8 * H)


def test_contract_specific_terms_override(db: psycopg.Connection) -> None:
    sla.set_terms(db, "gold", 1, 3600, 7200)
    site = factories.site(db, "Bank", contract="gold")
    device = factories.device(db, "pump-g1", site_id=site.id)
    assert open_job(db, device.id).response_due == T0 + H


def test_unknown_contract_falls_back_to_standard(db: psycopg.Connection) -> None:
    site = factories.site(db, "Shop", contract="bespoke")
    device = factories.device(db, "pump-s1", site_id=site.id)
    assert open_job(db, device.id).response_due == T0 + 4 * H


def test_unarrived_job_breaches_response_once(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    assert sla.detect_breaches(db, T0 + 3 * H) == []
    assert sla.detect_breaches(db, T0 + 5 * H) == [(job.id, "response")]
    assert sla.detect_breaches(db, T0 + 6 * H) == []
    assert jobs.get_job(db, job.id).response_due is not None
    (breached_at,) = db.execute("SELECT response_breached_at FROM jobs WHERE id = %s", (job.id,)).fetchone()
    assert breached_at == T0 + 5 * H


def test_late_arrival_records_breach_at_transition(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    job = jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0)
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        job = jobs.transition(db, job.id, status, expected_version=job.version, actor="t", now=T0 + 5 * H)
    kinds = db.execute("SELECT kind, detected_at FROM sla_breaches WHERE job_id = %s", (job.id,)).fetchall()
    assert kinds == [("response", T0 + 5 * H)]


def test_timely_arrival_is_no_breach(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    job = jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0)
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        job = jobs.transition(db, job.id, status, expected_version=job.version, actor="t", now=T0 + H)
    assert sla.detect_breaches(db, T0 + 10 * H) == []


def test_unfinished_job_breaches_resolution(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    found = sla.detect_breaches(db, T0 + 25 * H)
    assert sorted(found) == [(job.id, "resolution"), (job.id, "response")]


def test_cancelled_job_never_breaches(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    jobs.transition(db, job.id, JobStatus.CANCELLED, expected_version=job.version, actor="cc", now=T0)
    assert sla.detect_breaches(db, T0 + 30 * H) == []


def test_planned_arrival_after_deadline_flags_at_risk(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    assert jobs.assign(db, job.id, world.technician.id, T0 + 5 * H, now=T0).at_risk is True


def test_eta_past_deadline_flags_at_risk(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0)
    assert jobs.set_eta(db, job.id, T0 + 6 * H, now=T0 + H).at_risk is True


def test_refresh_at_risk_sets_and_clears(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0)
    db.execute("UPDATE jobs SET planned_arrival = %s WHERE id = %s", (T0 + 9 * H, job.id))
    assert sla.refresh_at_risk(db) == 1
    assert jobs.get_job(db, job.id).at_risk is True
    db.execute("UPDATE jobs SET planned_arrival = %s WHERE id = %s", (T0 + H, job.id))
    assert sla.refresh_at_risk(db) == 1
    assert jobs.get_job(db, job.id).at_risk is False


def test_breach_publishes_job_update(db: psycopg.Connection, world: World) -> None:
    job = open_job(db, world.device.id)
    sla.detect_breaches(db, T0 + 5 * H)
    updates = [e.payload for e in events.since(db, 0) if e.kind == events.JOB_UPDATED and e.job_id == job.id]
    assert updates[-1]["reason"] == "sla_breach"
