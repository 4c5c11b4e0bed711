"""The whole system running once per module, started as ``fieldops up`` starts it.

A fresh database (cloned from the migrated template) is seeded with a small region, given a
short history and a first model exactly as the demo prepares them; then the demo's process set
(``fieldops.up.commands.process_specs``) runs against the session Mosquitto on an accelerated
clock, with two faults injected into the live fleet: one that develops over simulated hours
(``PREDICTED``) and one that fails without warning (``SUDDEN``).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fieldops.clock import Clock
from fieldops.runtime.postgres import free_port
from fieldops.supervisor import Supervisor
from fieldops.up.commands import Pace, World, prepare_history, process_specs, seed_if_empty
from ingest.topics import Channel, topic
from simulators.seed import device_password
from tests.conftest import cloned_database
from tests.ingest.helpers import forget_session, publish_all, publisher

SPEED = 240.0  # simulated seconds per real second: the test covers a working morning
# A Monday in winter (CET): shifts run 07:00-16:00 UTC; the processes start shortly before.
PREPARED_AT = datetime(2026, 3, 2, 6, 10, tzinfo=UTC)
STARTED_AT = datetime(2026, 3, 2, 6, 15, tzinfo=UTC)
# The fixture's world runs on the test's time scale: faults in its history show a degradation
# phase of about WARNING_H before failing, the first model is trained with that horizon, and
# the injected fault develops over the same phase, long enough that the simulator's spread of
# failure times (about +-30%) still leaves hours between the alert and the failure, however the
# dispatch loop orders the day. The history is large enough for the model to
# learn each device model's common failure modes (about 70 failures); readings are hourly,
# since the model reads hourly means anyway.
WARNING_H = 18.0
WORLD = World(devices=200, technicians=12, history_days=60, history_resolution_s=3600,
              warning_h=WARNING_H, horizon_h=WARNING_H)
PACE = Pace(jobs_interval_s=300, score_interval_s=5, dispatch_interval_s=10, dispatch_time_limit_s=5,
            dispatch_position_every_s=10,
            position_every_s=2, fleet_window=500)


@dataclass(frozen=True)
class Fault:
    device_id: int
    serial: str
    model: str
    mode: str
    hours: float
    sudden: bool = False

    @property
    def injection(self) -> str:
        return f"{self.serial}:{self.mode}:{self.hours:g}" + (":sudden" if self.sudden else "")


@dataclass
class System:
    url: str
    supervisor: Supervisor
    log_path: Path
    clock: Clock
    web_url: str
    demo_password: str
    predicted: Fault
    sudden: Fault
    readings_before: int
    metrics_port: int

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def jobs_of(self, device_id: int) -> list[dict[str, Any]]:
        """The device's jobs opened while the system runs (not the backfilled history)."""
        with psycopg.connect(self.url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute(
                "SELECT id, source, status, failure_mode, priority, required_skills, technician_id, created_at, "
                "arrived_at, completed_at, finding, finding_mode, response_due, resolution_due, "
                "response_breached_at, resolution_breached_at FROM jobs WHERE device_id = %s AND created_at >= %s "
                "ORDER BY id", (device_id, STARTED_AT)).fetchall()

    def eventually(self, what: str, probe: Callable[[], Any], timeout_s: float,
                   observed: Callable[[], Any] | None = None, every_s: float = 1.0) -> Any:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the state seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                seen = observed() if observed is not None else value
                pytest.fail(f"{what}: not within {timeout_s:.0f} s real ({self.clock.now():%H:%M} simulated); "
                            f"observed {seen!r}\n--- last log lines ---\n{self.log_tail()}")
            for name, child in self.supervisor.children.items():
                if child.proc.poll() is not None:
                    pytest.fail(f"{what}: process {name} exited with {child.proc.returncode}\n"
                                f"--- last log lines ---\n{self.log_tail()}")
            time.sleep(every_s)


def _pick(conn: psycopg.Connection, model: str, skip: int = 0) -> tuple[int, str]:
    return conn.execute(
        "SELECT d.id, d.serial FROM devices d JOIN device_models m ON m.id = d.model_id "
        "WHERE m.code = %s ORDER BY d.id OFFSET %s LIMIT 1", (model, skip)).fetchone()


def _clear_retained_status(broker, serials: list[str]) -> None:
    """Remove the fleet's retained status messages, which later subscribers would receive."""
    admin = publisher(broker.port, broker.admin_user, broker.admin_password)
    try:
        publish_all(admin, [(topic(s, Channel.STATUS), b"") for s in serials], retain=True)
    finally:
        admin.disconnect()
        admin.loop_stop()


@pytest.fixture(scope="module")
def system(pg_admin_url: str, template_db: str, mqtt_broker, tmp_path_factory, artifacts_dir: Path
           ) -> Iterator[System]:
    data = tmp_path_factory.mktemp("e2e")
    log_path = artifacts_dir / "e2e-processes.log"
    web_port, metrics_port = free_port(), free_port()
    secret_key = secrets.token_hex(32)
    demo_password = secrets.token_urlsafe(9)
    with cloned_database(pg_admin_url, template_db, f"fieldops_e2e_{os.getpid()}") as url:
        env = {
            **os.environ,
            "FIELDOPS_ENV": "test",
            "FIELDOPS_DATABASE_URL": url,
            "FIELDOPS_DATA_DIR": str(data),
            "FIELDOPS_SECRET_KEY": secret_key,
            "FIELDOPS_MQTT_HOST": "127.0.0.1",
            "FIELDOPS_MQTT_PORT": str(mqtt_broker.port),
            "FIELDOPS_MQTT_USERNAME": mqtt_broker.ingest_user,
            "FIELDOPS_MQTT_PASSWORD": mqtt_broker.ingest_password,
            "FIELDOPS_WEB_PORT": str(web_port),
            # preparation runs at real speed just before the processes' simulated start
            "FIELDOPS_CLOCK_SPEED": "1",
            "FIELDOPS_CLOCK_ANCHOR": Clock(1.0, datetime.now(UTC), PREPARED_AT).anchor_string(),
        }
        seed_if_empty(url, env, WORLD)
        with psycopg.connect(url) as conn:
            serials = [s for (s,) in conn.execute("SELECT serial FROM devices").fetchall()]
            predicted = Fault(*_pick(conn, "air_compressor"), "air_compressor", "filter_clogging", WARNING_H)
            sudden = Fault(*_pick(conn, "chiller"), "chiller", "contactor_failure", 0.5, sudden=True)
        mqtt_broker.add_users({s: device_password(secret_key, s) for s in serials})
        prepare_history(url, env, WORLD, demo_password)
        with psycopg.connect(url) as conn:
            readings_before = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]

        clock = Clock(SPEED, datetime.now(UTC), STARTED_AT)
        env["FIELDOPS_CLOCK_SPEED"] = str(SPEED)
        env["FIELDOPS_CLOCK_ANCHOR"] = clock.anchor_string()
        fleet_args = ["--interval-s", "120", "--state-every-s", "2",
                      *(f"--fault={f.injection}" for f in (predicted, sudden))]
        with log_path.open("w") as out:
            supervisor = Supervisor(base_env=env, out=out, max_restarts=0)
            try:
                for spec in process_specs(web_host="127.0.0.1", web_port=web_port, metrics_port=metrics_port,
                                          demo_password=demo_password, pace=PACE, fleet_args=fleet_args):
                    supervisor.start(spec)
                yield System(url, supervisor, log_path, clock, f"http://127.0.0.1:{web_port}", demo_password,
                             predicted, sudden, readings_before, metrics_port)
            finally:
                supervisor.stop()
                # the demo's ingest keeps a persistent shared-subscription session on the session
                # broker: end it, or it would keep its share of later tests' messages
                forget_session(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password,
                               f"ingest-{socket.gethostname()}")
                _clear_retained_status(mqtt_broker, serials)

