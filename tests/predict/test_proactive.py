"""Proactive jobs from predictions, and technicians' findings on them as the next labels."""

from __future__ import annotations

from datetime import timedelta

from fieldops.domain import JobStatus
from fieldops.service import jobs
from predict import data, scorer
from tests import factories
from tests.factories import T0


def prediction(device_id: int, p: float, rul_h: float = 60.0, mode: str = "bearing_wear") -> scorer.Prediction:
    return scorer.Prediction(device_id, p, rul_h, mode, "vibration_mm_s up 40% over 7 days", "standard")


def prediction_jobs(db) -> list[tuple]:
    return db.execute("SELECT id, priority, source, failure_mode FROM jobs ORDER BY id").fetchall()


def test_risk_above_threshold_opens_one_job_with_the_modes_skill_parts_and_duration(db):
    dev = factories.device(db)
    opened = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)
    job = jobs.get_job(db, opened[dev.id])
    assert job.source == "prediction" and job.failure_mode == "bearing_wear"
    assert job.required_skills == frozenset({"mechanical"})
    assert [(p.sku, p.quantity) for p in job.required_parts] == [("BRG-1", 1)]
    assert job.estimated_duration_s == 5400
    assert job.windows[0].end == T0 + timedelta(hours=60 - scorer.SAFETY_MARGIN_H)
    assert "vibration_mm_s up 40% over 7 days" in job.explanation


def test_risk_below_threshold_opens_nothing(db):
    dev = factories.device(db)
    assert scorer.open_jobs(db, [prediction(dev.id, 0.3)], threshold=0.5, now=T0) == {}
    assert prediction_jobs(db) == []


def test_repeated_scoring_keeps_one_open_job(db):
    dev = factories.device(db)
    first = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)
    again = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0 + timedelta(minutes=10))
    assert again == first
    assert len(prediction_jobs(db)) == 1


def test_rising_risk_raises_the_priority_of_the_open_job(db):
    dev = factories.device(db)
    first = scorer.open_jobs(db, [prediction(dev.id, 0.6)], threshold=0.5, now=T0)
    assert jobs.get_job(db, first[dev.id]).priority == 3
    scorer.open_jobs(db, [prediction(dev.id, 0.95, rul_h=12)], threshold=0.5, now=T0 + timedelta(hours=1))
    assert [(j[0], j[1]) for j in prediction_jobs(db)] == [(first[dev.id], 1)]


def test_premium_contract_makes_the_job_more_urgent():
    assert scorer.priority_for(0.8, "premium", 48) < scorer.priority_for(0.8, "standard", 48)


def complete(db, job_id: int, finding: str, at) -> None:
    tech = factories.technician(db)
    jobs.assign(db, job_id, tech.id, at - timedelta(hours=2), now=at - timedelta(hours=3))
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        jobs.transition(db, job_id, status, expected_version=None, actor="ada", now=at - timedelta(hours=1))
    jobs.transition(db, job_id, JobStatus.COMPLETED, expected_version=None, actor="ada", now=at,
                    finding=finding)


def test_a_confirmed_fault_on_a_proactive_job_becomes_a_failure_label(db):
    dev = factories.device(db)
    job_id = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)[dev.id]
    complete(db, job_id, "fault_confirmed", T0 + timedelta(hours=20))
    fleet = data.load(db, T0 - timedelta(days=2), T0 + timedelta(days=2), [dev.id], n_slots=3)
    assert [(f.time, f.mode) for f in fleet.failures] == [(data.hours(T0 + timedelta(hours=20)), "bearing_wear")]
    assert fleet.repairs == [[data.hours(T0 + timedelta(hours=20))]]


def test_no_fault_found_is_a_service_visit_not_a_failure(db):
    dev = factories.device(db)
    job_id = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)[dev.id]
    complete(db, job_id, "no_fault_found", T0 + timedelta(hours=20))
    fleet = data.load(db, T0 - timedelta(days=2), T0 + timedelta(days=2), [dev.id], n_slots=3)
    assert fleet.failures == []
    assert fleet.repairs == [[data.hours(T0 + timedelta(hours=20))]]
