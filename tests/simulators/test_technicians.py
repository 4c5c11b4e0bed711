"""Simulated technicians work their route through the service layer (in process)."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from fieldops.clock import Clock, utcnow
from fieldops.db.repo import catalog
from fieldops.domain import JobSource, JobStatus
from fieldops.service import jobs, parts
from simulators import seed, store
from simulators.technicians import InProcessJobsClient, TechnicianSim

MONDAY_9 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Munich


@pytest.fixture
def world(db):
    seed.seed_data(db, now=MONDAY_9, secret="s", devices=4, technicians=1)
    db.commit()
    tech = catalog.technicians(db)[0]
    device = catalog.devices(db)[0]
    return tech, device


def open_job(db, tech, device, mode, failed=True):
    if failed:
        store.record_failures(db, [store.FailureTruth(device.id, mode, "X", MONDAY_9 - timedelta(days=3),
                                                      MONDAY_9 - timedelta(hours=2), None, "fleet")])
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.FAULT_EVENT, device_id=device.id,
                                              failure_mode=mode), actor="test", now=MONDAY_9)
    jobs.assign(db, job.id, tech.id, MONDAY_9 + timedelta(minutes=30), actor="test", now=MONDAY_9)
    db.commit()
    return job


def drive(client, until, *, speed=3600.0, position_every_s=0.02, timeout_s=15.0):
    """Step every technician of ``client`` from Monday 09:00 until ``until()``; closes the client."""
    clock = Clock(speed=speed, real_anchor=utcnow(), sim_anchor=MONDAY_9)
    sim = TechnicianSim(client, client.technicians(), clock, position_every_s=position_every_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until():
            sim.step()
            time.sleep(0.01)
    finally:
        client.close()


def work(db_url, until):
    drive(InProcessJobsClient(db_url), until)


def status(db, job_id):
    db.commit()
    return jobs.get_job(db, job_id)


def mode_of(device):
    return {"chiller": "refrigerant_leak", "air_compressor": "oil_leak",
            "elevator_drive": "door_operator_wear"}[device.model_code]


def test_technician_drives_to_the_job_and_repairs_what_failed(db, db_url, world):
    tech, device = world
    mode = mode_of(device)
    for p in catalog.device_models(db)[device.model_code].failure_mode(mode).parts:
        parts.receive(db, parts.van_of(db, tech.id), p.sku, p.quantity, actor="test", now=MONDAY_9)
    job = open_job(db, tech, device, mode)
    work(db_url, lambda: not status(db, job.id).is_open)
    done = status(db, job.id)
    assert (done.status, done.finding, done.finding_mode) == (JobStatus.COMPLETED, "fault_confirmed", mode)
    trail = [e.to_status for e in jobs.job_events(db, job.id)]
    assert trail[-4:] == ["dispatched", "en_route", "on_site", "completed"]
    assert {p.sku for p in parts.parts_used(db, job.id)} == {
        p.sku for p in catalog.device_models(db)[device.model_code].failure_mode(mode).parts}


def test_positions_are_posted_along_the_way_and_end_at_the_site(db, db_url, world):
    tech, device = world
    job = open_job(db, tech, device, mode_of(device))
    work(db_url, lambda: status(db, job.id).status is JobStatus.ON_SITE or not status(db, job.id).is_open)
    site = catalog.get_site(db, device.site_id).location
    lat, lon = db.execute("SELECT last_lat, last_lon FROM technicians WHERE id = %s", (tech.id,)).fetchone()
    assert (round(lat, 5), round(lon, 5)) == (round(site.lat, 5), round(site.lon, 5))
    posts = db.execute("SELECT count(*) FROM events WHERE kind = 'technician.position'").fetchone()[0]
    assert posts >= 3


def test_a_missing_part_leaves_the_job_unresolved_with_a_follow_up(db, db_url, world):
    tech, device = world
    mode = mode_of(device)
    van = parts.van_of(db, tech.id)
    needed = catalog.device_models(db)[device.model_code].failure_mode(mode).parts[0]
    catalog.set_stock(db, van, catalog.parts_by_sku(db)[needed.sku].id, 0)
    job = open_job(db, tech, device, mode)
    work(db_url, lambda: not status(db, job.id).is_open)
    assert status(db, job.id).status is JobStatus.UNRESOLVED
    (follow_up,) = [j for j in jobs.jobs_of_device(db, device.id) if j.parent_job_id == job.id]
    assert follow_up.source is JobSource.FOLLOW_UP and follow_up.is_open


def parts_at_a_warehouse(db, tech, device, mode):
    """Empty the van of the mode's parts and stock them at a warehouse; the warehouse id."""
    van = parts.van_of(db, tech.id)
    depot = db.execute("SELECT id FROM stock_locations WHERE kind = 'warehouse' ORDER BY id LIMIT 1").fetchone()[0]
    for p in catalog.device_models(db)[device.model_code].failure_mode(mode).parts:
        pid = catalog.parts_by_sku(db)[p.sku].id
        catalog.set_stock(db, van, pid, 0)
        catalog.set_stock(db, depot, pid, p.quantity + 1)
    return depot


def collected_from(db, job_id):
    """(from, to) locations of the parts moved for the job (not consumed: to a location)."""
    return db.execute("SELECT DISTINCT from_location_id, to_location_id FROM stock_movements "
                      "WHERE job_id = %s AND to_location_id IS NOT NULL", (job_id,)).fetchall()


def test_parts_planned_from_a_warehouse_are_collected_on_the_way(db, db_url, world):
    tech, device = world
    mode = mode_of(device)
    depot = parts_at_a_warehouse(db, tech, device, mode)
    store.record_failures(db, [store.FailureTruth(device.id, mode, "X", MONDAY_9 - timedelta(days=3),
                                                  MONDAY_9 - timedelta(hours=2), None, "fleet")])
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.FAULT_EVENT, device_id=device.id,
                                              failure_mode=mode), actor="test", now=MONDAY_9)
    jobs.assign(db, job.id, tech.id, MONDAY_9 + timedelta(minutes=30), actor="test", now=MONDAY_9,
                parts_location_id=depot)
    db.commit()
    work(db_url, lambda: not status(db, job.id).is_open)
    assert status(db, job.id).status is JobStatus.COMPLETED
    assert collected_from(db, job.id) == [(depot, parts.van_of(db, tech.id))]


def test_nothing_wrong_is_reported_as_no_fault_found(db, db_url, world):
    tech, device = world
    job = open_job(db, tech, device, mode_of(device), failed=False)
    work(db_url, lambda: not status(db, job.id).is_open)
    assert status(db, job.id).finding == "no_fault_found"


def test_a_job_cancelled_on_the_way_does_not_stop_the_technician(db, db_url, world):
    tech, device = world
    job = open_job(db, tech, device, mode_of(device))
    clock = Clock(speed=300.0, real_anchor=utcnow(), sim_anchor=MONDAY_9)
    client = InProcessJobsClient(db_url)
    sim = TechnicianSim(client, client.technicians(), clock, position_every_s=0.05)
    try:
        while status(db, job.id).status is not JobStatus.EN_ROUTE:
            sim.step()
        jobs.transition(db, job.id, JobStatus.CANCELLED, expected_version=None, actor="dispatcher",
                        now=MONDAY_9)
        other = catalog.devices(db)[1]
        second = jobs.create_job(db, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=other.id,
                                                     estimated_duration_s=300), actor="test", now=MONDAY_9)
        jobs.assign(db, second.id, tech.id, MONDAY_9, actor="test", now=MONDAY_9)
        db.commit()
        deadline = time.monotonic() + 30
        while status(db, second.id).is_open and time.monotonic() < deadline:
            sim.step()
            time.sleep(0.01)
    finally:
        client.close()
    assert status(db, job.id).status is JobStatus.CANCELLED
    assert status(db, second.id).status is JobStatus.COMPLETED
