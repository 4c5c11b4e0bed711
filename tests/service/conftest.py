"""Fixtures for the service tests: a shared database for read-only-by-rollback tests, small data."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from fieldops.db.repo import catalog
from fieldops.domain import Device, Site, Technician
from tests import factories
from tests.conftest import cloned_database

_names = itertools.count()


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """One migrated database for a whole module; tests using ``rolled_back`` leave it unchanged."""
    with cloned_database(pg_admin_url, template_db, f"fieldops_m{os.getpid()}_{next(_names)}") as url:
        yield url


@pytest.fixture
def rolled_back(module_db_url: str) -> Iterator[psycopg.Connection]:
    """A connection to the module database whose work is rolled back after the test."""
    with psycopg.connect(module_db_url) as conn:
        yield conn
        conn.rollback()


@dataclass(frozen=True)
class World:
    site: Site
    device: Device
    technician: Technician


def make_world(conn: psycopg.Connection) -> World:
    """One pump at one site (standard contract) and one mechanical technician."""
    device = factories.device(conn)
    tech = factories.technician(conn)
    return World(catalog.get_site(conn, device.site_id), device, tech)


@pytest.fixture
def world(db: psycopg.Connection) -> World:
    w = make_world(db)
    db.commit()
    return w
