"""``fieldops up``: managed services, migrations, seed data, history, a first model, then every process.

Preparation steps are skipped when their result is already there, so a second run starts fast
and reuses ``./var``. Ctrl-C stops every process, then the broker and the database.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from fieldops.clock import Clock
from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.supervisor import ProcessSpec, Supervisor
from fieldops.up import services

log = logging.getLogger(__name__)

INGEST_USER = "ingest"
OPERATOR_USER = "operator"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the whole system on this machine (the demo)")
    p.add_argument("--devices", type=int, default=500, help="devices in the seeded fleet")
    p.add_argument("--technicians", type=int, default=20, help="technicians in the seeded region")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    p.add_argument("--history-days", type=float, default=30.0, help="days of backfilled history")
    p.add_argument("--no-simulators", action="store_true", help="do not run the fleet and technicians")
    p.add_argument("--prepare-only", action="store_true", help="prepare, print the URLs, and stop")
    p.add_argument("--web-port", type=int, default=None, help="override FIELDOPS_WEB_PORT")
    p.set_defaults(func=cmd_up)


def _say(text: str) -> None:
    sys.stdout.write(f"[up        ] {text}\n")
    sys.stdout.flush()


def _fieldops(*args: str) -> list[str]:
    return [sys.executable, "-m", "fieldops.cli", *args]


def _run_step(title: str, argv: list[str], env: dict[str, str], *, required: bool = True) -> bool:
    """Run one preparation command with prefixed output; a required step that fails stops ``up``."""
    import subprocess

    _say(f"{title} ...")
    started = datetime.now(UTC)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
    """Simulated time starts at 06:30 UTC today (07:30 in Munich), when the day's work begins."""
    return now.replace(hour=6, minute=30, second=0, microsecond=0)


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute(query).fetchone()[0])


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.provision import ServiceAccount, broker_files_writer

    data = settings.data_path.resolve()
    data.mkdir(parents=True, exist_ok=True)
    secrets_ = services.load_secrets(data)
    web_port = args.web_port or settings.web_port

    _say(f"data directory {data}")
    pg = services.start_postgres(settings)
    broker = None
    sup = Supervisor()
    try:
        _say("database ready; applying migrations")
        migrate(pg.url, settings)

        clock = Clock(speed=args.speed, real_anchor=datetime.now(UTC),
                      sim_anchor=_demo_start(datetime.now(UTC)))
        ingest_password = settings.mqtt_password if settings.mqtt_host else secrets_["ingest_password"]
        env = {
            **os.environ,
            "FIELDOPS_DATABASE_URL": pg.url,
            "FIELDOPS_DATA_DIR": str(data),
            "FIELDOPS_SECRET_KEY": settings.secret_key if settings.env == "production" else secrets_["secret_key"],
            "FIELDOPS_MQTT_USERNAME": settings.mqtt_username if settings.mqtt_host else INGEST_USER,
            "FIELDOPS_MQTT_PASSWORD": ingest_password,
            "FIELDOPS_CLOCK_SPEED": str(args.speed),
            "FIELDOPS_CLOCK_ANCHOR": clock.anchor_string(),
            "FIELDOPS_WEB_PORT": str(web_port),
        }

        if _count(pg.url, "SELECT count(*) FROM devices") == 0:
            _run_step(f"seeding a region with {args.devices} devices and {args.technicians} technicians",
                      _fieldops("simulate", "seed-data", "--devices", str(args.devices),
                                "--technicians", str(args.technicians)), env)
        write_files = broker_files_writer(pg.url, [
            ServiceAccount(INGEST_USER, secrets_["ingest_password"], "read"),
            ServiceAccount(OPERATOR_USER, secrets_["operator_password"], "readwrite"),
        ])
        broker = services.start_broker(settings, write_files)
        env["FIELDOPS_MQTT_HOST"] = broker.host
        env["FIELDOPS_MQTT_PORT"] = str(broker.port)

        if _count(pg.url, "SELECT count(*) FROM (SELECT 1 FROM telemetry LIMIT 1) t") == 0:
            _run_step(f"backfilling {args.history_days:g} days of history",
                      _fieldops("simulate", "backfill", "--days", str(args.history_days)), env)
        if _count(pg.url, "SELECT count(*) FROM model_registry WHERE active") == 0:
            _run_step("training the first failure model",
                      _fieldops("predict", "train", "--days", str(args.history_days),
                                "--estimators", "random_forest"), env, required=False)
        _run_step("creating demo users", _fieldops("web-user", "demo", "--password",
                                                  secrets_["demo_password"]), env)

        _print_banner(web_port, broker, pg.url, secrets_["demo_password"], args, data)
        if args.prepare_only:
            return 0

        processes = [
            ProcessSpec("ingest", _fieldops("ingest", "--metrics-port", "9108")),
            ProcessSpec("jobs", _fieldops("jobs", "process-events", "--follow")),
            ProcessSpec("scorer", _fieldops("predict", "score-loop")),
            ProcessSpec("dispatch", _fieldops("dispatch", "loop")),
            ProcessSpec("web", _fieldops("web", "--bind", f"{settings.web_host}:{web_port}")),
        ]
        if not args.no_simulators:
            processes += [
                ProcessSpec("fleet", _fieldops("simulate", "fleet", "--window", "500")),
                ProcessSpec("techs", _fieldops("simulate", "technicians", "--web-url", f"http://127.0.0.1:{web_port}"),
                            env={"FIELDOPS_DEMO_PASSWORD": secrets_["demo_password"]}),
            ]
        sup.base_env = env
        for spec in processes:
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
        f"  dispatcher console   {base}/dispatch        login: dispatcher / {demo_password}",
        f"  technician page      {base}/tech            login: tech1 ... tech{args.technicians} / {demo_password}",
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
