import psycopg

from fieldops.config import Settings
from fieldops.db import schema
from fieldops.db.migrate import applied, discover, migrate


def _tables(conn):
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_template_has_every_migration(db):
    assert set(applied(db)) == {m.version for m in discover()}


def test_migrate_twice_changes_nothing(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        before = _tables(conn)
    assert migrate(db_url, Settings(env="test")) == []
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert _tables(conn) == before


def test_migrate_from_empty_database(pg_admin_url):
    from tests.conftest import _with_dbname

    name = "fieldops_empty_migrate"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_dbname(pg_admin_url, name)
    try:
        done = migrate(url, Settings(env="test"))
        assert [m.version for m in done] == [m.version for m in discover()]
        with psycopg.connect(url, autocommit=True) as conn:
            assert {"devices", "technicians", "stock", "schema_migrations"} <= _tables(conn)
            assert conn.execute("SELECT to_regclass('telemetry')").fetchone()[0] is not None
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_flavor_is_recorded(db):
    expected = schema.Flavor.TIMESCALEDB if db.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() else schema.Flavor.POSTGRES
    assert schema.flavor(db) is expected
