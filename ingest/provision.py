"""Device provisioning: MQTT credentials per device, stored hashed, and the broker files from the database.

The demo (``fieldops up``), docker compose (the broker-config step) and ``fieldops devices
provision`` all write the Mosquitto files through :func:`write_broker_files_from_db`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from fieldops.db import connect
from fieldops.db.repo import catalog
from fieldops.db.repo import ingest as repo
from fieldops.runtime.mosquitto import broker_user
from ingest.broker_config import BrokerLimits, hash_password, write_broker_files
from ingest.topics import valid_serial

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A non-device broker account: ``access`` is "read" (ingest) or "readwrite" (operator)."""

    user: str
    password: str
    access: str = "read"


def new_password() -> str:
    return secrets.token_urlsafe(18)


def provision(
    conn: psycopg.Connection, serials: Iterable[str], *, model_code: str | None = None,
    site_id: int | None = None, installed_at: datetime | None = None, rotate: bool = False,
) -> dict[str, str]:
    """Create the devices that do not exist (needs model, site, installed_at) and give a new MQTT
    password to each that has none (every one with ``rotate``). Returns serial -> new password;
    only the hash is stored. The caller commits."""
    serials = list(dict.fromkeys(serials))
    for serial in serials:
        if not valid_serial(serial):
            raise ValueError(f"serial: {serial!r} is not a valid device serial (letters, digits, _.:-)")
    existing = repo.device_refs(conn, serials)
    missing = [serial for serial in serials if serial not in existing]
    if missing:
        if model_code is None or site_id is None or installed_at is None:
            raise ValueError(f"device {missing[0]} does not exist: give model, site and installed_at")
        if model_code not in catalog.device_models(conn):
            raise LookupError(f"model: no device model {model_code!r}")
        try:
            catalog.get_site(conn, site_id)
        except catalog.NotFound:
            raise LookupError(f"site_id: no site {site_id}") from None
    have_hash = set(repo.password_hashes(conn)) if not rotate else set()
    passwords: dict[str, str] = {}
    for serial in serials:
        if serial not in existing:
            catalog.create_device(conn, serial, model_code, site_id, installed_at)
        if rotate or serial not in have_hash:
            password = new_password()
            repo.set_password_hash(conn, serial, hash_password(password))
            passwords[serial] = password
    log.info("provisioned %d device(s), %d new password(s)", len(serials), len(passwords))
    return passwords


def write_broker_files_from_db(
    conn: psycopg.Connection, directory: Path, *, port: int, services: Iterable[ServiceAccount],
    bind: str = "127.0.0.1", limits: BrokerLimits = BrokerLimits(), run_as: str | None = None,
    log_to_file: bool = False,
) -> Path:
    """mosquitto.conf, passwd (device hashes from the database plus service accounts) and ACL."""
    hashes = repo.password_hashes(conn)
    services = list(services)
    for account in services:
        if account.user in hashes:
            raise ValueError(f"service account {account.user!r} has the name of a device")
        hashes[account.user] = hash_password(account.password)
    return write_broker_files(
        directory, port=port, hashes=hashes, service_users={a.user: a.access for a in services},
        bind=bind, limits=limits, run_as=run_as, log_to_file=log_to_file,
    )


def broker_files_writer(database_url: str, services: Iterable[ServiceAccount]) -> Callable[[Path, int], Path]:
    """A ``write_files(directory, port)`` for ``fieldops up``'s managed broker: files from the database."""
    services = list(services)

    def write(directory: Path, port: int) -> Path:
        with connect(database_url) as conn:
            return write_broker_files_from_db(conn, directory, port=port, services=services,
                                              run_as=broker_user(), log_to_file=True)

    return write


def read_credentials(path: Path) -> dict[str, str]:
    """The serial -> password JSON object in ``path`` ({} if there is no such file); ValueError names
    the file when it cannot be read or holds anything else."""
    if not path.exists():
        return {}
    try:
        known = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file: {exc}") from None
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        raise ValueError(f"{path}: expected a JSON object of serial -> password")
    return known


def save_credentials(path: Path, passwords: Mapping[str, str]) -> None:
    """Merge serial -> password into a JSON file readable only by its owner (for the simulators)."""
    known = read_credentials(path)
    known.update(passwords)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
