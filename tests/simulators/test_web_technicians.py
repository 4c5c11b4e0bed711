"""Simulated technicians work their route over HTTP, signed in to a live web server."""

import threading
from datetime import timedelta

import pytest
from werkzeug.serving import make_server

from fieldops.clock import Clock, utcnow
from fieldops.config import Settings
from fieldops.db.repo import catalog
from fieldops.domain import JobSource, JobStatus
from fieldops.runtime.postgres import free_port
from fieldops.service import jobs, parts
from simulators import seed, store
from simulators.technicians import SignInError
from simulators.web_client import Credentials, WebJobsClient, WebSession, WebUnavailable
from tests.simulators.test_technicians import MONDAY_9, collected_from, drive, parts_at_a_warehouse
from web.app import close_app, create_app
from web.commands import demo_users

PASSWORD = "demo-password-1"


def serve(settings, port=0):
    """The web app on a threaded werkzeug server; returns (server, app)."""
    app = create_app(settings, start_hub=False, clock=Clock(speed=1.0, real_anchor=utcnow(), sim_anchor=MONDAY_9))
    srv = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, app


@pytest.fixture
def base_url(db_url):
    settings = Settings(env="test", database_url=db_url, secret_key="t" * 40, db_pool_max=4)
    srv, app = serve(settings)
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    close_app(app)


@pytest.fixture
def world(db):
    seed.seed_data(db, now=MONDAY_9, secret="s", devices=4, technicians=1)
    demo_users(db, PASSWORD)
    db.commit()
    return catalog.technicians(db)[0], catalog.devices(db)[0]


def mode_of(device):
    return {"chiller": "refrigerant_leak", "air_compressor": "oil_leak",
            "elevator_drive": "door_operator_wear"}[device.model_code]


def failed_job(db, tech, device, *, dispatched=True):
    mode = mode_of(device)
    store.record_failures(db, [store.FailureTruth(device.id, mode, "X", MONDAY_9 - timedelta(days=3),
                                                  MONDAY_9 - timedelta(hours=2), None, "fleet")])
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.FAULT_EVENT, device_id=device.id,
                                              failure_mode=mode), actor="test", now=MONDAY_9)
    jobs.assign(db, job.id, tech.id, MONDAY_9 + timedelta(minutes=30), actor="test", now=MONDAY_9)
    if dispatched:
        jobs.transition(db, job.id, "dispatched", expected_version=None, actor="test", now=MONDAY_9)
    db.commit()
    return job


def stock_van(db, tech, device):
    for p in catalog.device_models(db)[device.model_code].failure_mode(mode_of(device)).parts:
        parts.receive(db, parts.van_of(db, tech.id), p.sku, p.quantity, actor="test", now=MONDAY_9)
    db.commit()


def status(db, job_id):
    db.commit()
    return jobs.get_job(db, job_id)


def work(db_url, base_url, until, *, dispatcher=None):
    client = WebJobsClient(base_url, db_url, PASSWORD, dispatcher=dispatcher, backoff_s=0.05)
    drive(client, until, speed=1200.0, position_every_s=0.1, timeout_s=30.0)


def test_technician_completes_a_job_over_http_as_the_actor_in_the_audit_trail(db, db_url, base_url, world):
    tech, device = world
    stock_van(db, tech, device)
    job = failed_job(db, tech, device)
    work(db_url, base_url, lambda: not status(db, job.id).is_open)
    done = status(db, job.id)
    assert (done.status, done.finding, done.finding_mode) == (JobStatus.COMPLETED, "fault_confirmed", mode_of(device))
    trail = [(e.to_status, e.actor) for e in jobs.job_events(db, job.id)]
    me = f"user:tech{tech.id}"
    assert trail[-3:] == [("en_route", me), ("on_site", me), ("completed", me)]
    assert {p.sku for p in parts.parts_used(db, job.id)} == {
        p.sku for p in catalog.device_models(db)[device.model_code].failure_mode(mode_of(device)).parts}


def test_positions_posted_over_http_end_at_the_site(db, db_url, base_url, world):
    tech, device = world
    job = failed_job(db, tech, device)
    work(db_url, base_url, lambda: status(db, job.id).status is not JobStatus.EN_ROUTE and
         status(db, job.id).status is not JobStatus.DISPATCHED)
    site = catalog.get_site(db, device.site_id).location
    lat, lon = db.execute("SELECT last_lat, last_lon FROM technicians WHERE id = %s", (tech.id,)).fetchone()
    assert (round(lat, 5), round(lon, 5)) == (round(site.lat, 5), round(site.lon, 5))


def test_a_missing_part_over_http_leaves_the_job_unresolved_with_a_follow_up(db, db_url, base_url, world):
    tech, device = world
    needed = catalog.device_models(db)[device.model_code].failure_mode(mode_of(device)).parts[0]
    catalog.set_stock(db, parts.van_of(db, tech.id), catalog.parts_by_sku(db)[needed.sku].id, 0)
    job = failed_job(db, tech, device)
    work(db_url, base_url, lambda: not status(db, job.id).is_open)
    assert status(db, job.id).status is JobStatus.UNRESOLVED
    (follow_up,) = [j for j in jobs.jobs_of_device(db, device.id) if j.parent_job_id == job.id]
    assert follow_up.source is JobSource.FOLLOW_UP


def test_parts_planned_from_a_warehouse_are_collected_over_http(db, db_url, base_url, world):
    tech, device = world
    depot = parts_at_a_warehouse(db, tech, device, mode_of(device))
    job = failed_job(db, tech, device)
    parts.release_job(db, job.id, actor="test", now=MONDAY_9)
    parts.reserve_for_job(db, job.id, depot, actor="test", now=MONDAY_9)
    db.commit()
    work(db_url, base_url, lambda: not status(db, job.id).is_open)
    assert status(db, job.id).status is JobStatus.COMPLETED
    assert collected_from(db, job.id) == [(depot, parts.van_of(db, tech.id))]


def test_the_dispatcher_desk_releases_a_scheduled_job(db, db_url, base_url, world):
    tech, device = world
    job = failed_job(db, tech, device, dispatched=False)
    work(db_url, base_url, lambda: status(db, job.id).status is JobStatus.EN_ROUTE or not status(db, job.id).is_open,
         dispatcher=Credentials("dispatcher", PASSWORD))
    trail = [(e.to_status, e.actor) for e in jobs.job_events(db, job.id)]
    assert ("dispatched", "user:dispatcher") in trail


def test_without_a_desk_a_scheduled_job_is_not_on_the_phones_route(db, db_url, base_url, world):
    tech, device = world
    failed_job(db, tech, device, dispatched=False)
    client = WebJobsClient(base_url, db_url, PASSWORD)
    try:
        client.sign_in(tech.id)
        assert client.route(tech.id, MONDAY_9.date()) == []
    finally:
        client.close()


def test_a_wrong_password_is_a_sign_in_error(db_url, base_url, world):
    tech, _ = world
    client = WebJobsClient(base_url, db_url, "not-the-password")
    try:
        with pytest.raises(SignInError):
            client.sign_in(tech.id)
    finally:
        client.close()


def test_a_server_that_comes_up_late_is_retried(db_url, world):
    tech, _ = world
    port = free_port()
    settings = Settings(env="test", database_url=db_url, secret_key="t" * 40, db_pool_max=2)
    started = []
    threading.Timer(0.5, lambda: started.append(serve(settings, port))).start()
    session = WebSession(f"http://127.0.0.1:{port}", Credentials(f"tech{tech.id}", PASSWORD),
                         attempts=8, backoff_s=0.2)
    try:
        assert session.sign_in()["technician_id"] == tech.id
    finally:
        for srv, app in started:
            srv.shutdown()
            close_app(app)


def test_no_server_at_all_is_web_unavailable(db_url, world):
    session = WebSession(f"http://127.0.0.1:{free_port()}", Credentials("tech1", PASSWORD), attempts=2,
                         backoff_s=0.01)
    with pytest.raises(WebUnavailable):
        session.sign_in()
