"""Opening connections: every failure is DatabaseUnavailable with one line of reason."""

import secrets
import time

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fieldops.db.pool import DatabaseUnavailable, wait_ready


def _with(url: str, **params: str) -> str:
    return make_conninfo(**{**conninfo_to_dict(url), **params})


def _fails_at_once(url: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=reason):
        wait_ready(url, timeout_s=30)
    assert time.monotonic() - started < 5


def test_waiting_for_an_unreachable_server_ends_in_database_unavailable():
    with pytest.raises(DatabaseUnavailable, match="^cannot connect to the database: .*refused"):
        wait_ready("postgresql://127.0.0.1:1/fieldops", timeout_s=0.3)


def test_waiting_on_a_malformed_url_fails_at_once():
    _fails_at_once("garbage", "garbage")


def test_waiting_for_a_database_that_does_not_exist_fails_at_once(pg_admin_url):
    _fails_at_once(_with(pg_admin_url, dbname="no_such_db"), 'database "no_such_db" does not exist')


# The test cluster trusts every local login (initdb -A trust), so a wrong password cannot be
# refused there; an unknown role is the login refusal it can show.
def test_waiting_as_a_role_that_does_not_exist_fails_at_once(pg_admin_url):
    _fails_at_once(_with(pg_admin_url, user="no_such_role"), 'role "no_such_role" does not exist')


def test_too_many_connections_is_waited_out(pg_admin_url):
    role = f"limited_{secrets.token_hex(4)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(role)))
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="too many connections"):
            wait_ready(_with(pg_admin_url, user=role), timeout_s=1)
        assert time.monotonic() - started >= 1
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_ensure_database_creates_a_database_whose_name_needs_quoting_once(pg_admin_url):
    from fieldops.db.pool import ensure_database

    name = f"Field ops-{secrets.token_hex(3)}"
    try:
        assert ensure_database(pg_admin_url, name) is True
        assert ensure_database(pg_admin_url, name) is False
        with psycopg.connect(_with(pg_admin_url, dbname=name)) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == name
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
