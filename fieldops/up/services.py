"""The managed PostgreSQL and Mosquitto of ``fieldops up``, kept under the data directory.

Either is skipped when the settings name an external one (FIELDOPS_DATABASE_URL, FIELDOPS_MQTT_HOST).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fieldops.config import Settings
from fieldops.db.pool import connect, ensure_database, wait_ready
from fieldops.db.repo import prepared
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, share_with_broker, wait_port
from fieldops.runtime.postgres import LocalPostgres, free_port

log = logging.getLogger(__name__)

DB_NAME = "fieldops"


def load_secrets(data: Path) -> dict[str, str]:
    """Generated credentials of the managed services, created once and kept (mode 0600)."""
    path = data / "secrets.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    sizes = {"ingest_password": 32, "operator_password": 32, "secret_key": 32, "demo_password": 9}
    for key, nbytes in sizes.items():
        if key not in values:
            values[key] = secrets.token_urlsafe(nbytes)
            changed = True
    if changed:
        data.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return values


def _stable_port(path: Path, preferred: int) -> int:
    if path.exists():
        return int(path.read_text().strip())
    port = preferred if _port_free(preferred) else free_port()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(port))
    return port


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def settle_shutdown_offline(db_url: str, now: datetime, code: str = "offline") -> int:
    """Mark unhandled ``offline`` device events handled; returns how many.

    When ``up`` stops, every simulated device says goodbye with a retained ``offline``; the next
    run brings them back online, so those events are the demo's own shutdown, not field problems
    to open inspection jobs (and site alarm storms) for.
    """
    with connect(db_url) as conn:
        settled = prepared.settle_unhandled_events(conn, code, now)
        conn.commit()
    return settled


@dataclass
class ManagedPostgres:
    cluster: LocalPostgres | None
    url: str

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop("fast")


def start_postgres(settings: Settings) -> ManagedPostgres:
    if settings.database_url:
        wait_ready(settings.database_url, 60)
        return ManagedPostgres(None, settings.database_url)
    root = settings.data_path.resolve() / "postgres"
    cluster = LocalPostgres(root / "data", port=_stable_port(root / "port", 55432))
    if (cluster.data_dir / "postmaster.pid").exists():
        log.info("PostgreSQL data directory has a postmaster.pid; trying to stop a previous instance")
        try:
            cluster.stop("fast")
        except RuntimeError:
            (cluster.data_dir / "postmaster.pid").unlink(missing_ok=True)
    cluster.start(timeout_s=60)
    ensure_database(cluster.url, DB_NAME)
    return ManagedPostgres(cluster, cluster.url_for(DB_NAME))


@dataclass
class ManagedBroker:
    process: LocalMosquitto | None
    host: str
    port: int
    directory: Path | None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def broker_directory(settings: Settings) -> Path:
    return settings.data_path.resolve() / "mosquitto"


def start_broker(settings: Settings, write_files) -> ManagedBroker:
    """Start the managed broker after ``write_files(directory, port)`` wrote its configuration."""
    if settings.mqtt_host:
        wait_port(settings.mqtt_host, settings.mqtt_port, 60)
        return ManagedBroker(None, settings.mqtt_host, settings.mqtt_port, None)
    directory = broker_directory(settings)
    port = _stable_port(directory / "port", 11883)
    config = write_files(directory, port)
    for path in [directory, directory / "data", *directory.iterdir()]:
        share_with_broker(path)
    process = LocalMosquitto(config, port).start()
    log.info("Mosquitto running on 127.0.0.1:%d (runs as %s)", port, broker_user() or "current user")
    return ManagedBroker(process, "127.0.0.1", port, directory)
