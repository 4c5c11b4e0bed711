"""Web fixtures: an app on this test's database, signed-in clients per role, tiny named data."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from fieldops import events
from fieldops.clock import Clock, utcnow
from fieldops.config import Settings
from fieldops.domain import GeoPoint
from fieldops.service import jobs
from tests import factories
from web import store
from web.app import close_app, create_app
from web.context import EXTENSION
from web.security import hash_password

PASSWORD = "correct horse battery"
# The test accounts' stored hash, computed once: real scrypt, but with a low work factor (the
# factor is part of the hash, so logins verify it cheaply). test_auth covers the production factor.
PASSWORD_HASH = hash_password(PASSWORD, n=2**8)
NOON = factories.T0.replace(hour=12)  # the app's "now" in these tests


@pytest.fixture
def web_settings(db_url: str) -> Settings:
    return Settings(env="test", database_url=db_url, secret_key="t" * 40, db_pool_max=4)


def clock() -> Clock:
    return Clock(speed=1.0, real_anchor=utcnow(), sim_anchor=NOON)


@pytest.fixture
def app(web_settings: Settings) -> Iterator[Flask]:
    """The app without the live-update listener (see ``live_app``)."""
    app = create_app(web_settings, start_hub=False, clock=clock())
    yield app
    close_app(app)


@pytest.fixture
def live_app(web_settings: Settings) -> Iterator[Flask]:
    """The app with its live-update listener, which already follows the events."""
    app = create_app(web_settings, clock=clock())
    assert app.extensions[EXTENSION].hub.wait_begun(10)
    yield app
    close_promptly(app)


def close_promptly(app: Flask) -> None:
    """``close_app``, with the hub's listener woken by a notification once it is told to stop, so
    that stopping does not wait out the listener's poll interval."""
    hub = app.extensions[EXTENSION].hub
    conninfo = app.extensions[EXTENSION].settings.database_url
    if hub is None:
        close_app(app)
        return

    def wake() -> None:
        deadline = time.monotonic() + 10
        while not hub.stopped and time.monotonic() < deadline:
            time.sleep(0.005)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, '0')", (events.CHANNEL,))

    waker = threading.Thread(target=wake, name="hub-waker", daemon=True)
    waker.start()
    close_app(app)
    waker.join(10)


@dataclass
class People:
    """Two technicians with accounts (ada, bob), a dispatcher (dora) and an admin (root)."""

    ada_technician_id: int
    bob_technician_id: int


@dataclass
class Work:
    """One dispatched job each for Ada and Bob on pump devices, and one unassigned job."""

    ada_job_id: int
    bob_job_id: int
    new_job_id: int
    device_id: int


def dispatched_job(conn: psycopg.Connection, device_id: int, technician_id: int, arrival_h: int) -> int:
    job = jobs.create_job(conn, jobs.JobRequest(source="customer", device_id=device_id,
                                                failure_mode="bearing_wear", priority=2),
                          actor="test", now=factories.T0)
    jobs.assign(conn, job.id, technician_id, factories.T0.replace(hour=arrival_h), now=factories.T0)
    jobs.transition(conn, job.id, "dispatched", expected_version=None, actor="test", now=factories.T0)
    return job.id


@pytest.fixture
def work(db: psycopg.Connection, people: People) -> Work:
    plant_a = factories.device(db, "pump-a")
    plant_b = factories.site(db, "Plant B", GeoPoint(48.20, 11.60))
    pump_b = factories.device(db, "pump-b", plant_b.id)
    plant_c = factories.site(db, "Plant C", GeoPoint(48.05, 11.45))
    pump_c = factories.device(db, "pump-c", plant_c.id)
    ada_job = dispatched_job(db, plant_a.id, people.ada_technician_id, 13)
    bob_job = dispatched_job(db, pump_b.id, people.bob_technician_id, 14)
    new_job = jobs.create_job(db, jobs.JobRequest(source="customer", device_id=pump_c.id,
                                                  failure_mode="bearing_wear", priority=3),
                              actor="test", now=factories.T0)
    db.commit()
    return Work(ada_job, bob_job, new_job.id, plant_a.id)


@pytest.fixture
def people(db: psycopg.Connection) -> People:
    ada = factories.technician(db, "Ada Lovelace")
    bob = factories.technician(db, "Bob Builder")
    store.create_user(db, "ada", PASSWORD, "technician", ada.id, password_hash=PASSWORD_HASH)
    store.create_user(db, "bob", PASSWORD, "technician", bob.id, password_hash=PASSWORD_HASH)
    store.create_user(db, "dora", PASSWORD, "dispatcher", password_hash=PASSWORD_HASH)
    store.create_user(db, "root", PASSWORD, "admin", password_hash=PASSWORD_HASH)
    db.commit()
    return People(ada.id, bob.id)


def route_running(app: Flask, path: str, sql: str) -> None:
    """A test-only API route that runs ``sql`` on a pooled connection: stands in for a check the
    request checks miss, or a database that fails mid-request."""
    from web.context import db

    def view():
        with db() as conn:
            conn.execute(sql)
        return {}

    app.add_url_rule(path, path, view)


def csrf_of(client: FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> str:
    """Sign ``client`` in; return the session's CSRF token."""
    token = csrf_of(client)
    resp = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return csrf_of(client)


@pytest.fixture
def signed_in(app: Flask, people: People):
    """``signed_in(name)`` -> (client, csrf token); name None gives an anonymous client."""

    def make(username: str | None) -> tuple[FlaskClient, str]:
        client = app.test_client()
        if username is None:
            return client, csrf_of(client)
        return client, login(client, username)

    return make


def prediction(db, device_id, p_fail, scored_at):
    """One stored failure prediction (with its model registry row) explained by a vibration rise."""
    version = db.execute(
        "INSERT INTO model_registry (estimator, horizon_h, artifact, sha256) VALUES ('gb', 72, 'x', %s) "
        "RETURNING version", ("0" * 64,)).fetchone()[0]
    db.execute("INSERT INTO predictions (device_id, scored_at, model_version, p_fail, rul_h, explanation) "
               "VALUES (%s, %s, %s, %s, 40, 'vibration up 80%%')", (device_id, scored_at, version, p_fail))
    db.commit()
