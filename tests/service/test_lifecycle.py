"""Every allowed and forbidden transition, the audit trail, follow-ups and the version conflict."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import psycopg
import pytest

from fieldops.domain import JobSource, JobStatus, Priority
from fieldops.service import jobs
from fieldops.service.errors import ConflictError, ServiceError, TransitionError
from tests import factories
from tests.factories import T0
from tests.service.conftest import World, make_world

S = JobStatus
PATH = {
    S.NEW: (),
    S.SCHEDULED: (S.SCHEDULED,),
    S.DISPATCHED: (S.SCHEDULED, S.DISPATCHED),
    S.EN_ROUTE: (S.SCHEDULED, S.DISPATCHED, S.EN_ROUTE),
    S.ON_SITE: (S.SCHEDULED, S.DISPATCHED, S.EN_ROUTE, S.ON_SITE),
    S.COMPLETED: (S.SCHEDULED, S.DISPATCHED, S.EN_ROUTE, S.ON_SITE, S.COMPLETED),
    S.UNRESOLVED: (S.SCHEDULED, S.DISPATCHED, S.EN_ROUTE, S.ON_SITE, S.UNRESOLVED),
    S.CANCELLED: (S.CANCELLED,),
}
ALLOWED = {
    (S.NEW, S.SCHEDULED), (S.NEW, S.CANCELLED),
    (S.SCHEDULED, S.DISPATCHED), (S.SCHEDULED, S.NEW), (S.SCHEDULED, S.CANCELLED),
    (S.DISPATCHED, S.EN_ROUTE), (S.DISPATCHED, S.SCHEDULED), (S.DISPATCHED, S.CANCELLED),
    (S.EN_ROUTE, S.ON_SITE), (S.EN_ROUTE, S.SCHEDULED), (S.EN_ROUTE, S.CANCELLED),
    (S.ON_SITE, S.COMPLETED), (S.ON_SITE, S.UNRESOLVED),
}
PAIRS = list(itertools.product(list(S), list(S)))


def _kwargs(world: World, to: JobStatus) -> dict:
    if to is S.SCHEDULED:
        return {"technician_id": world.technician.id, "planned_arrival": T0 + timedelta(hours=1)}
    if to in (S.COMPLETED, S.UNRESOLVED):
        return {"finding": "fault_confirmed" if to is S.COMPLETED else "other"}
    return {}


def job_in(conn: psycopg.Connection, world: World, status: JobStatus) -> jobs.Job:
    job = jobs.create_job(conn, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=world.device.id,
                                                failure_mode="motor_fault"), actor="test", now=T0)
    for step in PATH[status]:
        job = jobs.transition(conn, job.id, step, expected_version=job.version, actor="test", now=T0,
                              **_kwargs(world, step))
    return job


def test_table_matches_the_issue_lifecycle() -> None:
    declared = {(a, b) for a, targets in jobs.TRANSITIONS.items() for b in targets}
    assert declared == ALLOWED


@pytest.mark.parametrize(("start", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition(rolled_back: psycopg.Connection, start: JobStatus, target: JobStatus) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, start)
    if (start, target) in ALLOWED:
        moved = jobs.transition(rolled_back, job.id, target, expected_version=job.version, actor="tech",
                                now=T0 + timedelta(hours=2), **_kwargs(world, target))
        assert (moved.status, moved.version) == (target, job.version + 1)
    else:
        with pytest.raises(TransitionError) as err:
            jobs.transition(rolled_back, job.id, target, expected_version=job.version, actor="tech",
                            now=T0 + timedelta(hours=2), **_kwargs(world, target))
        assert err.value.field == "to_status"
        assert jobs.get_job(rolled_back, job.id).version == job.version


def test_every_transition_is_audited_with_place(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.EN_ROUTE)
    jobs.transition(rolled_back, job.id, S.ON_SITE, expected_version=job.version, actor="ada", now=T0,
                    lat=48.1, lon=11.5, note="arrived")
    trail = jobs.job_events(rolled_back, job.id)
    assert [(e.from_status, e.to_status) for e in trail] == [
        (None, "new"), ("new", "scheduled"), ("scheduled", "dispatched"), ("dispatched", "en_route"),
        ("en_route", "on_site")]
    assert (trail[-1].actor, trail[-1].lat, trail[-1].lon, trail[-1].note) == ("ada", 48.1, 11.5, "arrived")


def test_completion_records_finding_and_confirmed_mode(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.COMPLETED)
    assert (job.finding, job.finding_mode, job.completed_at) == ("fault_confirmed", "motor_fault", T0)


def test_completion_without_finding_names_finding(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.ON_SITE)
    with pytest.raises(ServiceError) as err:
        jobs.transition(rolled_back, job.id, S.COMPLETED, expected_version=job.version, actor="t", now=T0)
    assert err.value.field == "finding"


def test_scheduling_without_technician_names_technician(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.NEW)
    with pytest.raises(ServiceError) as err:
        jobs.transition(rolled_back, job.id, S.SCHEDULED, expected_version=job.version, actor="t", now=T0)
    assert err.value.field == "technician_id"


def test_unresolved_opens_linked_follow_up(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.UNRESOLVED)
    follow = jobs.get_job(rolled_back, job.follow_up_job_id)
    assert (follow.status, follow.source, follow.parent_job_id, follow.failure_mode) == (
        S.NEW, JobSource.FOLLOW_UP, job.id, "motor_fault")


def test_unassign_clears_technician(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.SCHEDULED)
    back = jobs.unassign(rolled_back, job.id, now=T0, expected_version=job.version)
    assert (back.status, back.technician_id, back.planned_arrival) == (S.NEW, None, None)


def test_assign_reschedules_in_place_and_flags_risk(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = jobs.create_job(rolled_back, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=world.device.id,
                                                       priority=Priority.CRITICAL), actor="t", now=T0)
    first = jobs.assign(rolled_back, job.id, world.technician.id, T0 + timedelta(hours=1), now=T0)
    late = jobs.assign(rolled_back, job.id, world.technician.id, T0 + timedelta(hours=5), now=T0)
    assert (first.status, first.at_risk) == (S.SCHEDULED, False)
    assert (late.status, late.at_risk, late.version) == (S.SCHEDULED, True, first.version + 1)


def test_assign_hands_a_scheduled_job_to_another_technician(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.SCHEDULED)
    other = factories.technician(rolled_back, name="Grace")
    moved = jobs.assign(rolled_back, job.id, other.id, T0 + timedelta(hours=2), now=T0)
    assert (moved.status, moved.technician_id, moved.planned_arrival) == (
        S.SCHEDULED, other.id, T0 + timedelta(hours=2))


def test_stale_version_is_a_conflict(db_url: str) -> None:
    with psycopg.connect(db_url) as setup:
        world = make_world(setup)
        job = job_in(setup, world, S.SCHEDULED)
        setup.commit()
    with psycopg.connect(db_url) as dispatcher, psycopg.connect(db_url) as technician:
        jobs.transition(dispatcher, job.id, S.DISPATCHED, expected_version=job.version, actor="dispatch", now=T0)
        dispatcher.commit()
        with pytest.raises(ConflictError) as err:
            jobs.transition(technician, job.id, S.CANCELLED, expected_version=job.version, actor="web", now=T0)
        technician.rollback()
    assert err.value.field == "version"


def test_concurrent_edit_waits_then_conflicts(db_url: str) -> None:
    with psycopg.connect(db_url) as setup:
        world = make_world(setup)
        job = job_in(setup, world, S.NEW)
        setup.commit()
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        second.execute("SET lock_timeout = '5s'")
        jobs.transition(first, job.id, S.CANCELLED, expected_version=1, actor="a", now=T0)
        outcome: list[BaseException | jobs.Job] = []

        def race() -> None:
            try:
                outcome.append(jobs.update_job(second, job.id, expected_version=1, actor="b", now=T0, notes="x"))
            except BaseException as exc:  # noqa: BLE001 - handed to the assertion below
                outcome.append(exc)

        thread = threading.Thread(target=race)
        thread.start()
        first.commit()
        thread.join(10)
        second.rollback()
    assert isinstance(outcome[0], ConflictError)
    with psycopg.connect(db_url) as check:
        assert jobs.get_job(check, job.id).status == S.CANCELLED


def test_a_finding_mode_the_devices_model_lacks_is_refused(rolled_back: psycopg.Connection) -> None:
    world = make_world(rolled_back)
    job = job_in(rolled_back, world, S.ON_SITE)
    with pytest.raises(ServiceError) as err:
        jobs.transition(rolled_back, job.id, S.COMPLETED, expected_version=job.version, actor="t", now=T0,
                        finding="fault_confirmed", finding_mode="not_a_mode")
    assert err.value.field == "finding_mode"
