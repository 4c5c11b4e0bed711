"""Connections and the psycopg 3 pool. The only place that opens database connections."""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)


class DatabaseUnavailable(psycopg.OperationalError):
    """No connection could be opened (malformed URL, server unreachable, unknown database, refused
    login); the message is one line with the reason. An OperationalError, so code that retries on
    lost connections treats it alike."""


def connect(conninfo: str, *, autocommit: bool = False, **kwargs: object) -> psycopg.Connection:
    """One connection; the caller closes it. Raises DatabaseUnavailable when none can be opened."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, **kwargs)
    except psycopg.Error as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: psycopg.Error) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"cannot connect to the database: {' '.join(str(exc).split())}")


def make_pool(
    conninfo: str, *, min_size: int = 1, max_size: int = 10, name: str = "fieldops", timeout_s: float = 30.0,
    wait: bool = True,
) -> ConnectionPool:
    """An opened pool whose connections are checked before use; a caller waits up to ``timeout_s``
    for one, then gets PoolTimeout.

    With ``wait`` the pool's first ``min_size`` connections are opened before it is returned
    (PoolTimeout after 30 s); without, it is returned at once and connects in the background,
    retrying while the server is unreachable.
    """
    pool = ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout_s,
        open=False,
        check=ConnectionPool.check_connection,
        kwargs={"application_name": name},
    )
    pool.open(wait=wait, timeout=30)
    return pool


def wait_ready(conninfo: str, timeout_s: float = 30.0) -> None:
    """Block until the server accepts connections. Raises DatabaseUnavailable at once for a malformed
    URL, else with the last reason after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with connect(conninfo, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            malformed = isinstance(exc, DatabaseUnavailable) and not isinstance(exc.__cause__, psycopg.OperationalError)
            if malformed or time.monotonic() > deadline:
                if isinstance(exc, DatabaseUnavailable):
                    raise
                raise _unavailable(exc) from exc
            time.sleep(0.1)
