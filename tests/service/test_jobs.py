"""Job creation, de-duplication, reading and validation."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from fieldops import events
from fieldops.domain import JobSource, JobStatus, JobType, PartQuantity, Priority, TimeWindow
from fieldops.service import jobs
from fieldops.service.errors import NotFoundError, ServiceError
from tests.factories import T0
from tests.service.conftest import World, make_world


def customer_request(world: World, **overrides) -> jobs.JobRequest:
    values = dict(source=JobSource.CUSTOMER, device_id=world.device.id, failure_mode="bearing_wear",
                  priority=Priority.NORMAL, explanation="customer reports noise")
    values.update(overrides)
    return jobs.JobRequest(**values)


def test_customer_request_opens_new_job_with_failure_mode_defaults(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, customer_request(world), actor="callcentre", now=T0)
    assert (job.status, job.site_id, job.source, job.type) == (
        JobStatus.NEW, world.site.id, JobSource.CUSTOMER, JobType.REPAIR)
    assert job.required_skills == frozenset({"mechanical"})
    assert job.required_parts == (PartQuantity("BRG-1", 1),)
    assert job.estimated_duration_s == 5400
    assert job.version == 1


def test_creation_computes_standard_sla_deadlines(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, customer_request(world, priority=Priority.CRITICAL), actor="cc", now=T0)
    assert job.response_due == T0 + timedelta(hours=4)
    assert job.resolution_due == T0 + timedelta(hours=24)


def test_creation_writes_audit_row_and_event(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, customer_request(world), actor="callcentre", now=T0)
    trail = jobs.job_events(db, job.id)
    assert [(e.from_status, e.to_status, e.actor) for e in trail] == [(None, "new", "callcentre")]
    kinds = [(e.kind, e.job_id) for e in events.since(db, 0)]
    assert (events.JOB_CREATED, job.id) in kinds


def test_prediction_job_keeps_explanation_and_evidence(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, jobs.JobRequest(
        source=JobSource.PREDICTION, type=JobType.INSPECTION, device_id=world.device.id,
        failure_mode="motor_fault", priority=Priority.HIGH, explanation="current drift, p=0.81",
        evidence={"probability": 0.81}), actor="predict", now=T0)
    assert job.source == JobSource.PREDICTION
    assert job.explanation == "current drift, p=0.81"
    assert job.evidence[0]["probability"] == 0.81


def test_windows_and_explicit_parts_are_stored(db: psycopg.Connection, world: World) -> None:
    window = TimeWindow(T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    job = jobs.create_job(db, customer_request(world, windows=(window,), required_parts=(PartQuantity("MTR-1", 2),)),
                          actor="cc", now=T0)
    assert job.windows == (window,)
    assert job.required_parts == (PartQuantity("MTR-1", 2),)


def test_duplicate_signal_updates_the_open_job(db: psycopg.Connection, world: World) -> None:
    first = jobs.create_job(db, customer_request(world, priority=Priority.LOW, evidence={"n": 1}), actor="a", now=T0)
    second = jobs.create_job(
        db, customer_request(world, source=JobSource.PREDICTION, priority=Priority.HIGH, evidence={"n": 2}),
        actor="predict", now=T0 + timedelta(hours=1))
    assert second.id == first.id
    assert second.priority == Priority.HIGH
    assert [e["n"] for e in second.evidence] == [1, 2]
    assert second.version == 2
    assert len(jobs.open_jobs(db)) == 1


def test_duplicate_with_higher_priority_tightens_response_deadline(db: psycopg.Connection, world: World) -> None:
    jobs.create_job(db, customer_request(world, priority=Priority.LOW), actor="a", now=T0)
    merged = jobs.create_job(db, customer_request(world, priority=Priority.CRITICAL), actor="a",
                             now=T0 + timedelta(hours=1))
    assert merged.response_due == T0 + timedelta(hours=5)


def test_duplicate_with_lower_priority_keeps_priority(db: psycopg.Connection, world: World) -> None:
    jobs.create_job(db, customer_request(world, priority=Priority.HIGH), actor="a", now=T0)
    merged = jobs.create_job(db, customer_request(world, priority=Priority.LOW), actor="a", now=T0)
    assert merged.priority == Priority.HIGH


def test_other_failure_mode_opens_second_job(db: psycopg.Connection, world: World) -> None:
    jobs.create_job(db, customer_request(world), actor="a", now=T0)
    jobs.create_job(db, customer_request(world, failure_mode="motor_fault"), actor="a", now=T0)
    assert len(jobs.open_jobs(db)) == 2


def test_closed_job_does_not_absorb_new_signal(db: psycopg.Connection, world: World) -> None:
    first = jobs.create_job(db, customer_request(world), actor="a", now=T0)
    jobs.transition(db, first.id, JobStatus.CANCELLED, expected_version=1, actor="a", now=T0)
    again = jobs.create_job(db, customer_request(world), actor="a", now=T0)
    assert again.id != first.id


def test_database_refuses_second_open_job_for_device_and_mode(db: psycopg.Connection, world: World) -> None:
    jobs.create_job(db, customer_request(world), actor="a", now=T0)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO jobs (device_id, site_id, type, source, failure_mode, priority, estimated_duration_s, "
            "created_at, updated_at) VALUES (%s, %s, 'repair', 'customer', 'bearing_wear', 3, 60, %s, %s)",
            (world.device.id, world.site.id, T0, T0))


def test_get_job_unknown_names_job_id(db: psycopg.Connection) -> None:
    with pytest.raises(NotFoundError) as err:
        jobs.get_job(db, 999)
    assert err.value.field == "job_id"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"device_id": 999}, "device_id"),
    ({"priority": 0}, "priority"),
    ({"priority": 5}, "priority"),
    ({"priority": True}, "priority"),
    ({"estimated_duration_s": -5}, "estimated_duration_s"),
    ({"required_parts": (PartQuantity("NOPE-1", 1),)}, "required_parts"),
    ({"source": "rumour"}, "source"),
    ({"type": "party"}, "type"),
    ({"device_id": None, "site_id": None}, "site_id"),
    ({"device_id": None, "site_id": 999}, "site_id"),
])
def test_invalid_request_names_field(db: psycopg.Connection, world: World, overrides: dict, field: str) -> None:
    with pytest.raises(ServiceError) as err:
        jobs.create_job(db, customer_request(world, **overrides), actor="a", now=T0)
    assert err.value.field == field


def test_window_ending_before_start_names_windows(db: psycopg.Connection, world: World) -> None:
    backwards = (T0 + timedelta(hours=2), T0)
    with pytest.raises(ServiceError) as err:
        jobs.create_job(db, customer_request(world, windows=(backwards,)), actor="a", now=T0)
    assert err.value.field == "windows"


def test_open_jobs_are_ordered_by_priority(db: psycopg.Connection, world: World) -> None:
    low = jobs.create_job(db, customer_request(world, priority=Priority.LOW), actor="a", now=T0)
    crit = jobs.create_job(db, customer_request(world, failure_mode="motor_fault", priority=Priority.CRITICAL),
                           actor="a", now=T0)
    assert [j.id for j in jobs.open_jobs(db)] == [crit.id, low.id]


def test_open_jobs_filter_by_technician(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, customer_request(world), actor="a", now=T0)
    jobs.create_job(db, customer_request(world, failure_mode="motor_fault"), actor="a", now=T0)
    jobs.assign(db, job.id, world.technician.id, T0 + timedelta(hours=1), now=T0)
    assert [j.id for j in jobs.open_jobs(db, technician_id=world.technician.id)] == [job.id]


def test_as_domain_carries_planning_fields(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, customer_request(world), actor="a", now=T0)
    domain = job.as_domain()
    assert (domain.id, domain.required_parts, domain.response_due) == (job.id, job.required_parts, job.response_due)


def test_unknown_parent_job_names_parent_job_id(db: psycopg.Connection, world: World) -> None:
    with pytest.raises(NotFoundError) as err:
        jobs.create_job(db, customer_request(world, source=JobSource.FOLLOW_UP, parent_job_id=77), actor="a", now=T0)
    assert err.value.field == "parent_job_id"


def test_concurrent_duplicate_creation_merges_into_one_job(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="fieldops.service.jobs")
    with psycopg.connect(db_url) as setup:
        world = make_world(setup)
        setup.commit()
    results: list[jobs.Job] = []
    with psycopg.connect(db_url) as one, psycopg.connect(db_url) as two:
        results.append(jobs.create_job(one, customer_request(world), actor="one", now=T0))

        def second() -> None:
            results.append(jobs.create_job(two, customer_request(world, priority=Priority.HIGH), actor="two", now=T0))
            two.commit()

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.3)  # blocked on the unique index until the first commits
        one.commit()
        thread.join(10)
    assert results[1].id == results[0].id
    assert results[1].priority == Priority.HIGH
    assert "concurrent open job" in caplog.text  # the second insert met the unique index and merged


def test_a_failure_mode_the_devices_model_lacks_is_refused(db: psycopg.Connection, world: World) -> None:
    with pytest.raises(ServiceError) as err:
        jobs.create_job(db, customer_request(world, failure_mode="nonsense"), actor="callcentre", now=T0)
    assert err.value.field == "failure_mode"
    assert "has no failure mode 'nonsense' (it has bearing_wear, motor_fault)" in str(err.value)
