"""Web fixtures: an app on this test's database, signed-in clients per role, tiny named data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from fieldops.config import Settings
from tests import factories
from web import store
from web.app import close_app, create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def web_settings(db_url: str) -> Settings:
    return Settings(env="test", database_url=db_url, secret_key="t" * 40, db_pool_max=4)


@pytest.fixture
def app(web_settings: Settings) -> Iterator[Flask]:
    """The app without the live-update listener (see ``live_app``)."""
    app = create_app(web_settings, start_hub=False)
    yield app
    close_app(app)


@pytest.fixture
def live_app(web_settings: Settings) -> Iterator[Flask]:
    app = create_app(web_settings)
    yield app
    close_app(app)


@dataclass
class People:
    """Two technicians with accounts, a dispatcher and an admin."""

    ada_technician_id: int
    bob_technician_id: int


@pytest.fixture
def people(db: psycopg.Connection) -> People:
    ada = factories.technician(db, "Ada Lovelace")
    bob = factories.technician(db, "Bob Builder")
    store.create_user(db, "ada", PASSWORD, "technician", ada.id)
    store.create_user(db, "bob", PASSWORD, "technician", bob.id)
    store.create_user(db, "dora", PASSWORD, "dispatcher")
    store.create_user(db, "root", PASSWORD, "admin")
    db.commit()
    return People(ada.id, bob.id)


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
