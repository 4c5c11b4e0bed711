"""Versioned migrations, applied in order, each once, each in its own transaction.

A migration is ``migrations/NNNN_name.sql`` or ``migrations/NNNN_name.py`` (a module with
``apply(conn, ctx)``). Applied versions are recorded in ``schema_migrations``; a migration added
later with a lower number than the newest applied one is still applied. Number ranges by owner:
0001-0099 kernel, 0100 ingest, 0200 simulators, 0300 jobs, 0400 predict, 0500 dispatch, 0600 web.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from fieldops.config import Settings
from fieldops.db.pool import connect

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")
_LOCK_KEY = 0x6669656C646F7073  # "fieldops"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationContext:
    settings: Settings


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations numbered {version:04d}: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied(conn: psycopg.Connection) -> dict[int, str]:
    _ensure_table(conn)
    return {v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}


def _apply_one(conn: psycopg.Connection, migration: Migration, ctx: MigrationContext) -> None:
    if migration.path.suffix == ".sql":
        conn.execute(migration.path.read_text())
    else:
        spec = importlib.util.spec_from_file_location(f"_migration_{migration.version}", migration.path)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        module.apply(conn, ctx)
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )


def migrate(conninfo: str, settings: Settings, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration; return those applied. Safe to run concurrently and twice."""
    done: list[Migration] = []
    with connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            have = applied(conn)
            ctx = MigrationContext(settings)
            for migration in discover(directory):
                if migration.version in have:
                    if have[migration.version] != migration.checksum:
                        log.warning("migration %04d_%s changed after it was applied",
                                    migration.version, migration.name)
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                with conn.transaction():
                    _apply_one(conn, migration, ctx)
                done.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done
