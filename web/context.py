"""What every request needs: settings, the pool, the clock, the event hub; and the current user."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from flask import current_app, g
from psycopg_pool import ConnectionPool

from fieldops.clock import Clock
from fieldops.config import Settings
from web.hub import Hub
from web.store import User

EXTENSION = "fieldops"


@dataclass
class WebState:
    settings: Settings
    pool: ConnectionPool
    clock: Clock
    hub: Hub | None


def state() -> WebState:
    return current_app.extensions[EXTENSION]


@contextmanager
def db() -> Iterator[psycopg.Connection]:
    """A pooled connection; the transaction commits on success and rolls back on error."""
    with state().pool.connection() as conn:
        yield conn


def current_user() -> User | None:
    return g.get("user")
