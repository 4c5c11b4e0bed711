"""``fieldops up``: managed services, migrations, seed data, history, a first model, then every process.

Preparation steps are skipped when their result is already there, so a second run starts fast
and reuses ``./var``. Ctrl-C stops every process, then the broker and the database.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fieldops.cli import int_between, positive_float
from fieldops.clock import Clock
from fieldops.config import MAX_CLOCK_SPEED, Settings
from fieldops.db import connect
from fieldops.db.migrate import migrate
from fieldops.db.repo import prepared
from fieldops.supervisor import ProcessSpec, Supervisor
from fieldops.up import services

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

INGEST_USER = "ingest"
OPERATOR_USER = "operator"
METRICS_PORT = 9108
READING_INTERVAL_S = 600  # simulated seconds between a device's readings, history and live


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the whole system on this machine (the demo)")
    p.add_argument("--devices", type=int_between(1, 1_000_000), default=500, help="devices in the seeded fleet")
    p.add_argument("--technicians", type=int_between(1, 10_000), default=20, help="technicians in the seeded region")
    p.add_argument("--speed", type=positive_float(MAX_CLOCK_SPEED), default=60.0, help="simulated seconds per real second")
    p.add_argument("--history-days", type=positive_float(3650), default=30.0, help="days of backfilled history")
    p.add_argument("--reading-interval-s", type=int_between(1, 86_400), default=READING_INTERVAL_S,
                   help="simulated seconds between a device's readings, in the history and live "
                        "(one rate, so the first model scores data like what it learned from)")
    p.add_argument("--no-simulators", action="store_true", help="do not run the fleet and technicians")
    p.add_argument("--prepare-only", action="store_true", help="prepare, print the URLs, and stop")
    p.add_argument("--web-port", type=int_between(1, 65535), default=None, help="override FIELDOPS_WEB_PORT")
    p.set_defaults(func=cmd_up)


def _say(text: str) -> None:
    sys.stdout.write(f"[up        ] {text}\n")
    sys.stdout.flush()


def _fieldops(*args: str) -> list[str]:
    return [sys.executable, "-m", "fieldops.cli", *args]


def _run_step(title: str, argv: list[str], env: Mapping[str, str], *, required: bool = True) -> bool:
    """Run one preparation command with prefixed output; a required step that fails stops ``up``."""
    import subprocess

    _say(f"{title} ...")
    started = datetime.now(UTC)
    proc = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for raw in proc.stdout:
        sys.stdout.write(f"[prepare   ] {raw.decode(errors='replace')}")
    if proc.wait() != 0:
        if required:
            raise SystemExit(f"fieldops up: step failed: {title} (exit {proc.returncode})")
        _say(f"{title}: failed (exit {proc.returncode}); continuing without it")
        return False
    _say(f"{title}: done in {(datetime.now(UTC) - started).total_seconds():.1f}s")
    return True


def _demo_start(now: datetime) -> datetime:
    """Simulated time starts at 06:30 UTC on the latest weekday (07:30 in Munich in winter), before
    the technicians' shifts begin."""
    while now.weekday() >= 5:  # nobody works at the weekend: replay Friday
        now -= timedelta(days=1)
    return now.replace(hour=6, minute=30, second=0, microsecond=0)


def _holds(url: str, check: Callable[[psycopg.Connection], bool]) -> bool:
    """``check`` (a function of ``fieldops.db.repo.prepared``) on a connection of its own."""
    with connect(url) as conn:
        return check(conn)


@dataclass(frozen=True, slots=True)
class Pace:
    """How often the loops run. Intervals are real seconds unless named otherwise; the defaults
    suit the demo's 60x clock (the scorer then runs once per simulated hour)."""

    jobs_interval_s: float = 300.0  # service seconds between passes of the jobs loop
    score_interval_s: float = 60.0
    dispatch_interval_s: float = 300.0
    dispatch_time_limit_s: float = 5.0
    dispatch_position_every_s: float = 30.0  # re-plans on positions alone at most this often
    position_every_s: float = 5.0
    fleet_window: int = 500


def process_specs(*, web_host: str, web_port: int, metrics_port: int, demo_password: str,
                  simulators: bool = True, pace: Pace = Pace(),
                  fleet_args: Sequence[str] = ()) -> list[ProcessSpec]:
    """The long-running processes of the demo, in start order (the e2e test runs the same set)."""
    processes = [
        # the broker drops readings nobody has subscribed to yet: devices start after ingest subscribed
        ProcessSpec("ingest", _fieldops("ingest", "--metrics-port", str(metrics_port)), ready="subscribed"),
        ProcessSpec("jobs", _fieldops("jobs", "process-events", "--follow",
                                      "--interval-s", f"{pace.jobs_interval_s:g}")),
        ProcessSpec("scorer", _fieldops("predict", "score-loop", "--interval", f"{pace.score_interval_s:g}")),
        ProcessSpec("dispatch", _fieldops("dispatch", "loop", "--interval", f"{pace.dispatch_interval_s:g}",
                                          "--time-limit", f"{pace.dispatch_time_limit_s:g}",
                                          "--position-every", f"{pace.dispatch_position_every_s:g}")),
        ProcessSpec("web", _fieldops("web", "--bind", f"{web_host}:{web_port}")),
    ]
    if simulators:
        web_url = f"http://{'127.0.0.1' if web_host in ('', '0.0.0.0', '::') else web_host}:{web_port}"
        processes += [
            ProcessSpec("fleet", _fieldops("simulate", "fleet", "--window", str(pace.fleet_window), *fleet_args)),
            ProcessSpec("techs", _fieldops("simulate", "technicians", "--web-url", web_url,
                                           "--position-every-s", f"{pace.position_every_s:g}"),
                        env={"FIELDOPS_DEMO_PASSWORD": demo_password}),
        ]
    return processes


@dataclass(frozen=True, slots=True)
class World:
    """What preparation creates when it is missing: seed data, history and a first model."""

    devices: int = 500
    technicians: int = 20
    history_days: float = 30.0
    history_resolution_s: int = READING_INTERVAL_S  # the live fleet's too (see live_fleet_args)
    warning_h: float = 72.0  # nominal degradation phase before a failure in the history
    horizon_h: float = 72.0  # the first model's failure horizon


def live_fleet_args(world: World) -> list[str]:
    """The live fleet reads at the history's interval: the first model learned from hourly means
    of that many readings, and scoring means of many more would shift its features."""
    return ["--interval-s", str(world.history_resolution_s)]


def seed_if_empty(db_url: str, env: Mapping[str, str], world: World) -> None:
    if not _holds(db_url, prepared.has_devices):
        _run_step(f"seeding a region with {world.devices} devices and {world.technicians} technicians",
                  _fieldops("simulate", "seed-data", "--devices", str(world.devices),
                            "--technicians", str(world.technicians)), env)


def prepare_history(db_url: str, env: Mapping[str, str], world: World, demo_password: str) -> None:
    """Backfill and a first model unless present, then the demo accounts (the broker must be up)."""
    if not _holds(db_url, prepared.has_telemetry):
        _run_step(f"backfilling {world.history_days:g} days of history",
                  _fieldops("simulate", "backfill", "--days", str(world.history_days),
                            "--resolution-s", str(world.history_resolution_s),
                            "--warning-h", f"{world.warning_h:g}"), env)
    if not _holds(db_url, prepared.has_active_model):
        _run_step("training the first failure model",
                  _fieldops("predict", "train", "--days", str(world.history_days),
                            "--horizon", f"{world.horizon_h:g}", "--estimators", "random_forest"),
                  env, required=False)
    # one argument: a generated password may start with "-"
    _run_step("creating demo users", _fieldops("web-user", "demo", f"--password={demo_password}"), env)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.consumer import OFFLINE_CODE
    from ingest.provision import ServiceAccount, broker_files_writer

    data = settings.data_path.resolve()
    data.mkdir(parents=True, exist_ok=True)
    secrets_ = services.load_secrets(data)
    web_port = args.web_port or settings.web_port
    world = World(args.devices, args.technicians, args.history_days, args.reading_interval_s)

    _say(f"data directory {data}")
    pg = services.start_postgres(settings)
    broker = None
    sup = Supervisor()
    try:
        _say("database ready; applying migrations")
        migrate(pg.url, settings)

        # Preparation runs at real speed from the demo's start, so history ends where the live
        # processes begin; their accelerated clock starts when they do (not minutes of
        # preparation later in simulated time).
        prep_clock = Clock(speed=1.0, real_anchor=datetime.now(UTC), sim_anchor=_demo_start(datetime.now(UTC)))
        ingest_password = settings.mqtt_password if settings.mqtt_host else secrets_["ingest_password"]
        env = {
            **os.environ,
            "FIELDOPS_DATABASE_URL": pg.url,
            "FIELDOPS_DATA_DIR": str(data),
            "FIELDOPS_SECRET_KEY": settings.secret_key if settings.env == "production" else secrets_["secret_key"],
            "FIELDOPS_MQTT_USERNAME": settings.mqtt_username if settings.mqtt_host else INGEST_USER,
            "FIELDOPS_MQTT_PASSWORD": ingest_password,
            "FIELDOPS_CLOCK_SPEED": "1",
            "FIELDOPS_CLOCK_ANCHOR": prep_clock.anchor_string(),
            "FIELDOPS_WEB_PORT": str(web_port),
        }

        seed_if_empty(pg.url, env, world)
        write_files = broker_files_writer(pg.url, [
            ServiceAccount(INGEST_USER, secrets_["ingest_password"], "read"),
            ServiceAccount(OPERATOR_USER, secrets_["operator_password"], "readwrite"),
        ])
        broker = services.start_broker(settings, write_files)
        env["FIELDOPS_MQTT_HOST"] = broker.host
        env["FIELDOPS_MQTT_PORT"] = str(broker.port)
        prepare_history(pg.url, env, world, secrets_["demo_password"])

        _print_banner(web_port, broker, pg.url, secrets_["demo_password"], args, data)
        if args.prepare_only:
            return 0

        if not args.no_simulators:
            settled = services.settle_shutdown_offline(pg.url, prep_clock.now(), OFFLINE_CODE)
            if settled:
                _say(f"{settled} offline event(s) from the last shutdown marked handled")
        clock = Clock(speed=args.speed, real_anchor=datetime.now(UTC), sim_anchor=prep_clock.now())
        env["FIELDOPS_CLOCK_SPEED"] = str(args.speed)
        env["FIELDOPS_CLOCK_ANCHOR"] = clock.anchor_string()
        sup.base_env = env
        for spec in process_specs(web_host=settings.web_host, web_port=web_port, metrics_port=METRICS_PORT,
                                  demo_password=secrets_["demo_password"], simulators=not args.no_simulators,
                                  fleet_args=live_fleet_args(world)):
            sup.start(spec)
        _say("running; press Ctrl-C to stop everything")
        return sup.run_until_signal()
    finally:
        sup.stop()
        if broker is not None:
            broker.stop()
        pg.stop()
        _say("stopped")


def _print_banner(web_port: int, broker, db_url: str, demo_password: str, args, data: Path) -> None:
    base = f"http://127.0.0.1:{web_port}"
    lines = [
        "",
        "fieldops is up",
        f"  dispatcher console   {base}/console/        login: dispatcher / {demo_password}",
        f"  technician page      {base}/tech/           login: tech1 ... tech{args.technicians} / {demo_password}",
        f"  customer tracking    {base}/track/<token>   (links on each job in the console)",
        "  ingest metrics       http://127.0.0.1:9108/metrics",
        f"  MQTT broker          {broker.host}:{broker.port}",
        f"  database             {db_url}",
        f"  clock                {args.speed:g}x real time; history {args.history_days:g} days",
        f"  credentials          {data / 'secrets.json'}",
        "",
    ]
    for line in lines:
        _say(line)
