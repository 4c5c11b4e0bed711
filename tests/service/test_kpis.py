"""Each KPI on a small hand-checked data set.

Ada (region south, shift 08-17 with a 30 min break = 30600 s) and Bob (region north, same shift):
- job A, customer, P3, pump-a, created T0 08:00, en route 09:00, on site 10:00, completed 11:00
  (fault_confirmed), rated 4; a new customer job on pump-a opens 5 days later (not a first-time fix).
- job B, prediction, P1 (response due 12:00), pump-b, Bob, created T0 08:00, en route 12:00,
  on site 13:00 (late), completed 14:00 (no_fault_found), rated 2.
- job C, prediction, P3, pump-c, Ada, created day 2 08:00, en route 08:00, on site 08:30,
  unresolved 10:30 (follow-up opened), not rated.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from fieldops.domain import JobSource, JobStatus, Priority
from fieldops.service import feedback, jobs
from fieldops.service.errors import ServiceError
from fieldops.service.kpis import kpis
from tests import factories
from tests.factories import T0

H = timedelta(hours=1)
SHIFT_S = 9 * 3600 - 1800
S = JobStatus


def run(conn, job, tech_id, steps, finding):
    """Drive a job: scheduled at its creation, then (status, time) steps."""
    job = jobs.assign(conn, job.id, tech_id, steps[0][1], now=job.created_at)
    job = jobs.transition(conn, job.id, S.DISPATCHED, expected_version=job.version, actor="d", now=job.created_at)
    for status, at in steps:
        job = jobs.transition(conn, job.id, status, expected_version=job.version, actor="t", now=at,
                              finding=finding if status in (S.COMPLETED, S.UNRESOLVED) else None)
    return job


@pytest.fixture
def scenario(db: psycopg.Connection) -> dict:
    ada = factories.technician(db, "Ada")
    bob = factories.technician(db, "Bob", skills=("electrical",))
    db.execute("UPDATE technicians SET region = CASE id WHEN %s THEN 'south' ELSE 'north' END", (ada.id,))
    site = factories.site(db)
    pa, pb, pc = (factories.device(db, f"pump-{x}", site_id=site.id) for x in "abc")
    day2 = T0 + timedelta(days=1)

    def req(dev, source, priority, mode):
        return jobs.JobRequest(source=source, device_id=dev.id, priority=priority, failure_mode=mode)

    a = jobs.create_job(db, req(pa, JobSource.CUSTOMER, Priority.NORMAL, "bearing_wear"), actor="cc", now=T0)
    a = run(db, a, ada.id, [(S.EN_ROUTE, T0 + H), (S.ON_SITE, T0 + 2 * H), (S.COMPLETED, T0 + 3 * H)],
            "fault_confirmed")
    feedback.submit(db, a.id, 4, now=T0 + 4 * H)
    jobs.create_job(db, req(pa, JobSource.CUSTOMER, Priority.NORMAL, "motor_fault"), actor="cc",
                    now=T0 + timedelta(days=5))
    b = jobs.create_job(db, req(pb, JobSource.PREDICTION, Priority.CRITICAL, "motor_fault"), actor="p", now=T0)
    b = run(db, b, bob.id, [(S.EN_ROUTE, T0 + 4 * H), (S.ON_SITE, T0 + 5 * H), (S.COMPLETED, T0 + 6 * H)],
            "no_fault_found")
    feedback.submit(db, b.id, 2, now=T0 + 7 * H)
    c = jobs.create_job(db, req(pc, JobSource.PREDICTION, Priority.NORMAL, "bearing_wear"), actor="p", now=day2)
    run(db, c, ada.id, [(S.EN_ROUTE, day2), (S.ON_SITE, day2 + H / 2), (S.UNRESOLVED, day2 + 2.5 * H)], "other")
    db.commit()
    return {"ada": ada, "bob": bob}


def totals(db: psycopg.Connection, by: str = "all"):
    return kpis(db, T0 - timedelta(days=1), T0 + timedelta(days=3), by)


def test_job_count(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].jobs == 3


def test_response_compliance(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].response_compliance == pytest.approx(2 / 3)  # B arrived 13:00 > 12:00


def test_resolution_compliance_counts_unresolved_as_miss(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].resolution_compliance == pytest.approx(2 / 3)


def test_first_time_fix_rate(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].first_time_fix_rate == pytest.approx(1 / 2)  # A revisited within 30 days, B not


def test_mean_time_to_repair(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].mttr_s == pytest.approx((3 * 3600 + 6 * 3600) / 2)


def test_mean_response_time(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].mean_response_s == pytest.approx((2 * 3600 + 5 * 3600 + 1800) / 3)


def test_proactive_precision(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].proactive_precision == pytest.approx(0.0)  # B no fault, C other


def test_mean_satisfaction(db: psycopg.Connection, scenario: dict) -> None:
    assert totals(db)[0].satisfaction == pytest.approx(3.0)


def test_utilisation_by_technician(db: psycopg.Connection, scenario: dict) -> None:
    rows = {r.key: r for r in totals(db, "technician")}
    ada, bob = str(scenario["ada"].id), str(scenario["bob"].id)
    assert rows[ada].utilisation == pytest.approx((3600 + 7200) / (2 * SHIFT_S))  # two working days
    assert rows[bob].utilisation == pytest.approx(3600 / SHIFT_S)


def test_travel_share_by_technician(db: psycopg.Connection, scenario: dict) -> None:
    rows = {r.key: r for r in totals(db, "technician")}
    assert rows[str(scenario["ada"].id)].travel_share == pytest.approx((3600 + 1800) / (2 * SHIFT_S))


def test_by_day(db: psycopg.Connection, scenario: dict) -> None:
    rows = {r.key: r.jobs for r in totals(db, "day")}
    assert rows == {"2026-03-02": 2, "2026-03-03": 1}


def test_by_region_of_technician_for_utilisation(db: psycopg.Connection, scenario: dict) -> None:
    rows = {r.key: r.utilisation for r in totals(db, "region") if r.utilisation is not None}
    assert rows == {"north": pytest.approx(3600 / SHIFT_S), "south": pytest.approx(10800 / (2 * SHIFT_S))}


def test_by_model(db: psycopg.Connection, scenario: dict) -> None:
    (row,) = totals(db, "model")
    assert (row.key, row.jobs, row.utilisation) == ("pump", 3, None)


def test_unknown_grouping_names_by(db: psycopg.Connection) -> None:
    with pytest.raises(ServiceError) as err:
        kpis(db, T0, T0 + H, "planet")
    assert err.value.field == "by"
