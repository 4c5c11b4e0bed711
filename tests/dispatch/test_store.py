"""Dispatch against the database: plan commit, parts reservation, overrides, the loop."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from dispatch import loop, overrides
from dispatch.loop import plan_once, run_loop
from dispatch.problem import Params
from dispatch.travel import GeodesicProvider
from fieldops import events
from fieldops.db.repo import catalog
from fieldops.domain import GeoPoint, JobSource, JobStatus, StockKind
from fieldops.service import jobs, parts
from fieldops.service.errors import ConflictError
from tests import factories
from tests.factories import T0

FAST = Params(time_limit_s=1.0, seed=1)


def _day(db: psycopg.Connection) -> tuple[int, int, int]:
    """One pump needing a bearing, a mechanical technician, a warehouse with one bearing."""
    device = factories.device(db)
    ada = factories.technician(db)
    store = catalog.create_stock_location(db, StockKind.WAREHOUSE, "Main", GeoPoint(48.12, 11.55))
    parts.receive(db, store.id, "BRG-1", 1, actor="test", now=T0)
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=device.id,
                                              failure_mode="bearing_wear"), actor="cc", now=T0)
    db.commit()
    return job.id, ada.id, store.id


def test_plan_assigns_job_reserves_pickup_part_and_announces(db: psycopg.Connection) -> None:
    job_id, ada, store = _day(db)
    plan_id, solution = plan_once(db, T0, FAST, GeodesicProvider())
    job = jobs.get_job(db, job_id)
    assert (job.status, job.technician_id) == (JobStatus.SCHEDULED, ada)
    assert job.planned_arrival is not None and job.eta == job.planned_arrival
    kinds = db.execute("SELECT kind, location_id FROM plan_visits WHERE plan_id = %s ORDER BY sequence",
                       (plan_id,)).fetchall()
    assert kinds == [("pickup", store), ("job", store)]
    assert parts.reserved_for_job(db, job_id) == {(store, "BRG-1"): 1}
    assert events.PLAN_CHANGED in [e.kind for e in events.since(db, 0)]


def test_replan_keeps_the_single_part_promised_once(db: psycopg.Connection) -> None:
    job_id, _, store = _day(db)
    plan_once(db, T0, FAST, GeodesicProvider())
    plan_once(db, T0, FAST, GeodesicProvider(), trigger="again")
    assert parts.level(db, store, "BRG-1").reserved == 1
    assert db.execute("SELECT count(*) FROM plans WHERE active").fetchone()[0] == 1


def test_override_missing_skill_is_refused_unless_forced(db: psycopg.Connection) -> None:
    job_id, _, _ = _day(db)
    bob = factories.technician(db, "Bob", ("electrical",), GeoPoint(48.2, 11.6))
    db.commit()
    with pytest.raises(overrides.OverrideRefused, match="lacks skill mechanical"):
        overrides.apply(db, "assign", job_id, actor="disp", now=T0, technician_id=bob.id)
    db.rollback()
    warning = overrides.apply(db, "assign", job_id, actor="disp", now=T0, technician_id=bob.id,
                              force=True)
    db.commit()
    assert warning == f"technician {bob.id} lacks skill mechanical"
    plan_once(db, T0, FAST, GeodesicProvider())
    assert jobs.get_job(db, job_id).technician_id == bob.id


def test_unassign_override_holds_the_job_out_of_plans(db: psycopg.Connection) -> None:
    job_id, _, store = _day(db)
    plan_once(db, T0, FAST, GeodesicProvider())
    overrides.apply(db, "unassign", job_id, actor="disp", now=T0)
    db.commit()
    _, solution = plan_once(db, T0, FAST, GeodesicProvider())
    assert jobs.get_job(db, job_id).status is JobStatus.NEW
    assert solution.technician_of(job_id) is None
    assert parts.level(db, store, "BRG-1").reserved == 0


def test_loop_plans_at_start_and_periodically(db_url: str, db: psycopg.Connection) -> None:
    job_id, ada, _ = _day(db)
    runs = run_loop(db_url, lambda: T0, FAST, GeodesicProvider(), interval_s=0.2, max_runs=2)
    assert runs == 2
    assert db.execute("SELECT count(*) FROM plans").fetchone()[0] == 2
    assert jobs.get_job(db, job_id).technician_id == ada


def test_a_run_outpaced_by_job_changes_is_deferred_without_a_traceback(
        db_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _day(db)
    real, calls = loop.plan_once, []

    def outpaced_once(*args, **kwargs):
        calls.append(kwargs["trigger"])
        if len(calls) == 1:
            raise ConflictError("jobs", "jobs kept changing during 3 planning attempts")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "plan_once", outpaced_once)
    with caplog.at_level(logging.INFO, logger="dispatch.loop"):
        runs = run_loop(db_url, lambda: T0, FAST, GeodesicProvider(), interval_s=0.2, max_runs=1)
    assert runs == 1 and calls == ["start", "periodic"]
    deferred = [r for r in caplog.records if "deferred" in r.getMessage()]
    assert len(deferred) == 1 and deferred[0].levelno == logging.WARNING and deferred[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_lock_keeps_the_job_where_the_active_plan_has_it(db: psycopg.Connection) -> None:
    job_id, ada, _ = _day(db)
    plan_once(db, T0, FAST, GeodesicProvider())
    planned = jobs.get_job(db, job_id).planned_arrival
    overrides.apply(db, "lock", job_id, actor="disp", now=T0)
    db.commit()
    factories.technician(db, "Cy", ("mechanical",), GeoPoint(48.137, 11.575))  # next door
    db.commit()
    plan_once(db, T0, FAST, GeodesicProvider(), trigger="override")
    job = jobs.get_job(db, job_id)
    assert (job.technician_id, job.planned_arrival) == (ada, planned)


def test_loop_replans_when_a_job_arrives_not_on_its_own_commit(db_url: str, db: psycopg.Connection) -> None:
    device = factories.device(db)
    factories.technician(db)
    db.commit()

    def open_job_later() -> None:
        with psycopg.connect(db_url) as other:
            jobs.create_job(other, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=device.id,
                                                   failure_mode="motor_fault"), actor="cc", now=T0)

    timer = threading.Timer(1.0, open_job_later)
    timer.start()
    runs = run_loop(db_url, lambda: T0, FAST, GeodesicProvider(), interval_s=30.0, max_runs=2)
    timer.join()
    triggers = [t for (t,) in db.execute("SELECT trigger FROM plans ORDER BY id")]
    assert runs == 2 and triggers == ["start", events.JOB_CREATED]


def test_loop_does_not_replan_on_its_own_assignments(db_url: str, db: psycopg.Connection) -> None:
    _day(db)  # the start plan assigns the job: status and ETA events from the plan's commit
    runs = run_loop(db_url, lambda: T0, FAST, GeodesicProvider(), interval_s=1.0, max_runs=2)
    triggers = [t for (t,) in db.execute("SELECT trigger FROM plans ORDER BY id")]
    assert runs == 2 and triggers == ["start", "periodic"]


def test_positions_alone_do_not_replan_before_position_every(db_url: str, db: psycopg.Connection) -> None:
    _, ada, _ = _day(db)
    device = factories.device(db, "pump-2")
    db.commit()

    def position_then_job() -> None:
        _position(db_url, ada)
        time.sleep(2.0)  # well after the start plan (1 s search) is committed
        with psycopg.connect(db_url) as other:
            jobs.create_job(other, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=device.id,
                                                   failure_mode="motor_fault"), actor="cc", now=T0)

    triggers = _two_runs(db_url, db, position_then_job, interval_s=30.0, position_every_s=60.0)
    assert triggers == ["start", events.JOB_CREATED]


def test_positions_alone_replan_once_position_every_has_passed(db_url: str, db: psycopg.Connection) -> None:
    _, ada, _ = _day(db)
    triggers = _two_runs(db_url, db, lambda: _position(db_url, ada), interval_s=30.0, position_every_s=2.0)
    assert triggers == ["start", events.TECHNICIAN_POSITION]


def _position(db_url: str, technician_id: int) -> None:
    with psycopg.connect(db_url) as other:
        events.publish(other, events.TECHNICIAN_POSITION, {"technician_id": technician_id, "lat": 48.1,
                                                           "lon": 11.5}, technician_id=technician_id)


def _two_runs(db_url: str, db: psycopg.Connection, background, **loop_args) -> list[str]:
    """Run the loop for two plans while ``background`` runs in a thread from 0.2 s on; their triggers."""
    timer = threading.Timer(0.2, background)
    timer.start()
    runs = run_loop(db_url, lambda: T0, FAST, GeodesicProvider(), max_runs=2, **loop_args)
    timer.join()
    assert runs == 2
    return [t for (t,) in db.execute("SELECT trigger FROM plans ORDER BY id")]
