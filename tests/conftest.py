"""Session fixtures: a private PostgreSQL 15 and a private Mosquitto on free loopback ports.

Every test gets a fresh database cloned from a migrated template. With
``FIELDOPS_TEST_DATABASE_URL`` set (an admin URL of an existing server, e.g. TimescaleDB), the
suite creates and drops its databases there instead of starting its own cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, reload, share_with_broker
from fieldops.runtime.postgres import LocalPostgres, free_port
from ingest.broker_config import hash_password, write_broker_files

ARTIFACTS = Path(__file__).parent / "artifacts"


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("FIELDOPS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    cluster = LocalPostgres(tmp_path_factory.mktemp("pg") / "data", fast_unsafe=True).start()
    try:
        yield cluster.url
    finally:
        cluster.stop("immediate")


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    name = f"fieldops_tpl_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    migrate(_with_dbname(pg_admin_url, name), Settings(env="test"))
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_counter = itertools.count()


@contextlib.contextmanager
def cloned_database(pg_admin_url: str, template: str, name: str) -> Iterator[str]:
    """A database cloned from ``template``, dropped on exit; yields its URL."""
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _with_dbname(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DatabaseSupply:
    """Fresh clones of the template, made ahead of need by a background thread, which also drops
    the databases handed back; tests then do not wait for CREATE or DROP DATABASE. Every database
    is handed out once only."""

    def __init__(self, admin_url: str, template: str, ahead: int = 2) -> None:
        self._admin_url = admin_url
        self._template = template
        self._ahead = ahead
        self._ready: list[str] = []
        self._used: list[str] = []
        self._error: BaseException | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="database-supply", daemon=True)
        self._thread.start()

    def take(self, timeout_s: float = 120.0) -> str:
        """The name of a fresh database that no one else has been given."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._error is not None, timeout=timeout_s):
                raise TimeoutError(f"no fresh database within {timeout_s:.0f} s")
            if not self._ready:
                raise RuntimeError("creating a test database failed") from self._error
            name = self._ready.pop(0)
            self._cond.notify_all()
            return name

    def give_back(self, name: str) -> None:
        """Drop ``name`` (and end its connections) in the background."""
        with self._cond:
            self._used.append(name)
            self._cond.notify_all()

    def close(self) -> None:
        """Drop every database made or handed back; wait for the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(120)

    def _next_task(self) -> tuple[str, str] | None:
        with self._cond:
            while True:
                if self._used:
                    return "drop", self._used.pop(0)
                if self._closing:
                    if self._ready:
                        return "drop", self._ready.pop(0)
                    return None
                if len(self._ready) < self._ahead and self._error is None:
                    return "create", f"fieldops_t{os.getpid()}_{next(_counter)}"
                self._cond.wait()

    def _run(self) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as admin:
            while (task := self._next_task()) is not None:
                action, name = task
                if action == "drop":
                    with contextlib.suppress(psycopg.Error):  # the cluster is thrown away anyway
                        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    continue
                try:
                    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
                except psycopg.Error as exc:
                    with self._cond:
                        self._error = exc
                        self._cond.notify_all()
                    continue
                with self._cond:
                    self._ready.append(name)
                    self._cond.notify_all()


@pytest.fixture(scope="session")
def database_supply(pg_admin_url: str, template_db: str) -> Iterator[DatabaseSupply]:
    supply = DatabaseSupply(pg_admin_url, template_db)
    try:
        yield supply
    finally:
        supply.close()


@pytest.fixture
def db_url(pg_admin_url: str, database_supply: DatabaseSupply) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = database_supply.take()
    try:
        yield _with_dbname(pg_admin_url, name)
    finally:
        database_supply.give_back(name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection to this test's database (autocommit off: commit explicitly)."""
    with psycopg.connect(db_url) as conn:
        yield conn


@pytest.fixture
def settings(db_url: str, mqtt_broker: Broker) -> Settings:
    return Settings(
        env="test",
        database_url=db_url,
        mqtt_host="127.0.0.1",
        mqtt_port=mqtt_broker.port,
        mqtt_username=mqtt_broker.ingest_user,
        mqtt_password=mqtt_broker.ingest_password,
    )


@dataclass
class Broker:
    """The test broker and its accounts; ``add_users`` rewrites the password file and reloads."""

    process: LocalMosquitto
    directory: Path
    port: int
    ingest_user: str = "ingest"
    ingest_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    admin_user: str = "operator"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    hashes: dict[str, str] = field(default_factory=dict)

    def write(self) -> None:
        write_broker_files(
            self.directory, port=self.port, hashes=self.hashes,
            service_users={self.ingest_user: "read", self.admin_user: "readwrite"},
            run_as=broker_user(), log_to_file=True,
        )
        for path in [self.directory, self.directory / "data", *self.directory.iterdir()]:
            share_with_broker(path)

    def add_users(self, passwords: dict[str, str]) -> None:
        for user, password in passwords.items():
            self.hashes[user] = hash_password(password)
        self.write()
        reload(self.process)

    def restart(self) -> None:
        self.process.restart()


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    directory = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    broker = Broker(process=None, directory=directory, port=port)  # type: ignore[arg-type]
    broker.hashes = {
        broker.ingest_user: hash_password(broker.ingest_password),
        broker.admin_user: hash_password(broker.admin_password),
    }
    broker.write()
    broker.process = LocalMosquitto(directory / "mosquitto.conf", port).start()
    try:
        yield broker
    finally:
        broker.process.stop()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

