"""Reactive jobs from device events: faults, offline devices, alarm storms."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from fieldops.domain import JobSource, JobType, Priority
from fieldops.service import jobs
from tests import factories
from tests.factories import T0
from tests.service.conftest import World


def device_event(conn: psycopg.Connection, device_id: int, code: str, severity: str, at=T0,
                 payload: str = "{}") -> int:
    (eid,) = conn.execute(
        "INSERT INTO device_events (device_id, ts, code, severity, payload) VALUES (%s, %s, %s, %s, %s) "
        "RETURNING id", (device_id, at, code, severity, payload),
    ).fetchone()
    return eid


def test_fault_event_opens_reactive_repair_job_with_mode(db: psycopg.Connection, world: World) -> None:
    device_event(db, world.device.id, "E42", "fault", payload='{"mode": "bearing_wear"}')
    summary = jobs.process_device_events(db, T0)
    (job,) = jobs.open_jobs(db)
    assert summary.created == (job.id,)
    assert (job.source, job.type, job.failure_mode, job.priority) == (
        JobSource.FAULT_EVENT, JobType.REPAIR, "bearing_wear", Priority.HIGH)
    assert job.required_skills == frozenset({"mechanical"})


def test_events_are_marked_handled_once(db: psycopg.Connection, world: World) -> None:
    device_event(db, world.device.id, "E42", "fault")
    device_event(db, world.device.id, "W1", "warning", at=T0 + timedelta(seconds=1))
    first = jobs.process_device_events(db, T0)
    second = jobs.process_device_events(db, T0)
    assert (first.handled, second.handled) == (2, 0)
    assert db.execute("SELECT count(*) FROM device_events WHERE handled_at IS NULL").fetchone()[0] == 0


def test_warning_opens_no_job(db: psycopg.Connection, world: World) -> None:
    device_event(db, world.device.id, "W1", "warning")
    jobs.process_device_events(db, T0)
    assert jobs.open_jobs(db) == []


def test_repeated_fault_merges_into_open_job(db: psycopg.Connection, world: World) -> None:
    device_event(db, world.device.id, "E42", "fault", payload='{"mode": "bearing_wear"}')
    jobs.process_device_events(db, T0)
    device_event(db, world.device.id, "E42", "fault", at=T0 + timedelta(minutes=5), payload='{"mode": "bearing_wear"}')
    summary = jobs.process_device_events(db, T0 + timedelta(minutes=5))
    (job,) = jobs.open_jobs(db)
    assert summary.merged == (job.id,)
    assert len(job.evidence) == 2


def test_single_offline_device_gets_its_own_job(db: psycopg.Connection, world: World) -> None:
    device_event(db, world.device.id, "offline", "error")
    jobs.process_device_events(db, T0)
    (job,) = jobs.open_jobs(db)
    assert (job.device_id, job.failure_mode, job.type) == (world.device.id, "offline", JobType.INSPECTION)


def test_alarm_storm_collapses_into_one_site_job(db: psycopg.Connection, world: World) -> None:
    others = [factories.device(db, f"pump-{n:04d}", site_id=world.site.id) for n in range(2, 6)]
    for n, dev in enumerate([world.device, *others]):
        device_event(db, dev.id, "offline", "error", at=T0 + timedelta(seconds=10 * n))
    summary = jobs.process_device_events(db, T0 + timedelta(minutes=1))
    (job,) = jobs.open_jobs(db)
    assert summary.storms == (world.site.id,)
    assert (job.device_id, job.site_id, job.failure_mode) == (None, world.site.id, jobs.SITE_OFFLINE_MODE)
    assert sorted(job.evidence[0]["device_ids"]) == sorted(d.id for d in [world.device, *others])


def test_storm_spread_over_two_batches_joins_the_site_job(db: psycopg.Connection, world: World) -> None:
    others = [factories.device(db, f"pump-{n:04d}", site_id=world.site.id) for n in range(2, 5)]
    for dev in [world.device, *others[:2]]:
        device_event(db, dev.id, "offline", "error")
    jobs.process_device_events(db, T0)
    device_event(db, others[2].id, "offline", "error", at=T0 + timedelta(seconds=30))
    summary = jobs.process_device_events(db, T0 + timedelta(seconds=30))
    (job,) = jobs.open_jobs(db)
    assert summary.merged == (job.id,)


def test_offline_devices_at_different_sites_are_no_storm(db: psycopg.Connection, world: World) -> None:
    for n in range(3):
        other_site = factories.site(db, f"Plant {n}")
        dev = factories.device(db, f"pump-x{n}", site_id=other_site.id)
        device_event(db, dev.id, "offline", "error")
    summary = jobs.process_device_events(db, T0)
    assert summary.storms == ()
    assert len(jobs.open_jobs(db)) == 3


def test_storm_absorbs_earlier_unscheduled_device_offline_jobs(db: psycopg.Connection, world: World) -> None:
    others = [factories.device(db, f"pump-{n:04d}", site_id=world.site.id) for n in range(2, 4)]
    device_event(db, world.device.id, "offline", "error")
    device_event(db, others[0].id, "offline", "error", at=T0 + timedelta(seconds=5))
    first = jobs.process_device_events(db, T0 + timedelta(seconds=5))
    device_event(db, others[1].id, "offline", "error", at=T0 + timedelta(seconds=20))
    jobs.process_device_events(db, T0 + timedelta(seconds=20))
    (site_job,) = jobs.open_jobs(db)
    assert site_job.device_id is None
    assert {jobs.get_job(db, j).status for j in first.created} == {"cancelled"}


def test_fault_payload_priority_is_used(db: psycopg.Connection, world: World) -> None:
    device_event(db, world.device.id, "E9", "fault", payload='{"priority": 1}')
    jobs.process_device_events(db, T0)
    assert jobs.open_jobs(db)[0].priority == Priority.CRITICAL



def test_event_that_cannot_open_a_job_is_counted_not_fatal(db: psycopg.Connection, world: World) -> None:
    db.execute("DELETE FROM sla_terms WHERE priority = 2")  # P2 jobs now have no SLA terms
    bad = device_event(db, world.device.id, "E1", "fault", payload='{"mode": "bearing_wear", "priority": 2}')
    device_event(db, world.device.id, "E2", "fault", payload='{"mode": "motor_fault", "priority": 1}')
    summary = jobs.process_device_events(db, T0)
    assert (summary.handled, summary.failed, len(summary.created)) == (2, (bad,), 1)
    assert db.execute("SELECT count(*) FROM device_events WHERE handled_at IS NULL").fetchone()[0] == 0


def test_a_fault_with_an_unknown_or_malformed_mode_still_opens_a_job_naming_none(db: psycopg.Connection,
                                                                                world: World) -> None:
    device_event(db, world.device.id, "E7", "fault", payload='{"mode": ["x"]}')
    device_event(db, factories.device(db, "pump-0009", site_id=world.site.id).id, "E7", "fault",
                 payload='{"mode": "not_a_mode"}')
    summary = jobs.process_device_events(db, T0)
    opened = jobs.open_jobs(db)
    assert len(summary.created) == 2 and summary.failed == ()
    assert [j.failure_mode for j in opened] == [None, None]
    assert sorted(j.explanation.split(" at ")[0] for j in opened) == [
        "device fault E7 (unknown mode 'not_a_mode')", "device fault E7 (unknown mode ['x'])"]
