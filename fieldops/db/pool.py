"""Connections and the psycopg 3 pool. The only place that opens database connections."""

from __future__ import annotations

import logging
import re
import time

import psycopg
from psycopg import sql
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


# Refusals at login that waiting cannot cure: unknown database (3D000), unknown role or login not
# allowed (28000), failed authentication (28P01, 28000), and libpq's own "no password supplied".
# libpq hands a failed login over as text without its SQLSTATE, so the server's (English) message
# is matched; a server with translated messages falls back to waiting out the timeout.
_FINAL_REFUSAL = re.compile(
    r'FATAL:\s+(database ".*" does not exist|role ".*" does not exist|role ".*" is not permitted to log in'
    r"|.*authentication failed for user|no pg_hba\.conf entry|pg_hba\.conf rejects connection)"
    r"|fe_sendauth: no password supplied"
)


def wait_ready(conninfo: str, timeout_s: float = 30.0) -> None:
    """Block until the server accepts connections. Raises DatabaseUnavailable at once when waiting
    cannot help (malformed URL, unknown database or role, refused login), else with the last reason
    after ``timeout_s`` (server unreachable, starting up, too many connections)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with connect(conninfo, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if _waiting_cannot_help(exc) or time.monotonic() > deadline:
                if isinstance(exc, DatabaseUnavailable):
                    raise
                raise _unavailable(exc) from exc
            time.sleep(0.1)


def _waiting_cannot_help(exc: psycopg.OperationalError) -> bool:
    reason = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
    if not isinstance(reason, psycopg.OperationalError):
        return True  # psycopg refused the URL itself, before trying to connect
    return _FINAL_REFUSAL.search(str(reason)) is not None


def ensure_database(admin_url: str, name: str) -> bool:
    """Create database ``name`` through ``admin_url`` unless it exists; True when it was created."""
    with connect(admin_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None:
            return False
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
