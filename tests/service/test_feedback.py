"""Customer ratings after the visit; low ratings open manager tasks."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from fieldops.domain import JobSource, JobStatus
from fieldops.service import feedback, jobs
from fieldops.service.errors import ServiceError
from tests.factories import T0
from tests.service.conftest import World

H = timedelta(hours=1)


def finished_job(db: psycopg.Connection, world: World) -> jobs.Job:
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=world.device.id), actor="cc",
                          now=T0)
    job = jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0)
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        job = jobs.transition(db, job.id, status, expected_version=job.version, actor="t", now=T0 + H)
    return jobs.transition(db, job.id, JobStatus.COMPLETED, expected_version=job.version, actor="t",
                           now=T0 + 2 * H, finding="no_fault_found")


def test_good_rating_is_stored_without_task(db: psycopg.Connection, world: World) -> None:
    job = finished_job(db, world)
    given = feedback.submit(db, job.id, 5, "quick and tidy", now=T0 + 3 * H)
    assert feedback.get(db, job.id) == given
    assert (given.rating, given.task_id) == (5, None)
    assert feedback.tasks(db) == []


def test_low_rating_opens_manager_task(db: psycopg.Connection, world: World) -> None:
    job = finished_job(db, world)
    given = feedback.submit(db, job.id, 1, "came late", now=T0 + 3 * H)
    (task,) = feedback.tasks(db)
    assert (task.id, task.job_id, task.kind) == (given.task_id, job.id, "low_rating")
    assert "came late" in task.description


def test_closing_task_removes_it_from_open_list(db: psycopg.Connection, world: World) -> None:
    job = finished_job(db, world)
    given = feedback.submit(db, job.id, 2, now=T0 + 3 * H)
    feedback.close_task(db, given.task_id, now=T0 + 4 * H)
    assert feedback.tasks(db) == []


@pytest.mark.parametrize("rating", [0, 6, "5", True])
def test_rating_out_of_range_names_rating(db: psycopg.Connection, world: World, rating) -> None:
    job = finished_job(db, world)
    with pytest.raises(ServiceError) as err:
        feedback.submit(db, job.id, rating, now=T0)
    assert err.value.field == "rating"


def test_open_job_cannot_be_rated(db: psycopg.Connection, world: World) -> None:
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=world.device.id), actor="cc",
                          now=T0)
    with pytest.raises(ServiceError) as err:
        feedback.submit(db, job.id, 4, now=T0)
    assert err.value.field == "job_id"


def test_second_rating_is_refused(db: psycopg.Connection, world: World) -> None:
    job = finished_job(db, world)
    feedback.submit(db, job.id, 4, now=T0 + 3 * H)
    with pytest.raises(ServiceError) as err:
        feedback.submit(db, job.id, 5, now=T0 + 4 * H)
    assert err.value.field == "job_id"
