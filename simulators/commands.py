"""``fieldops simulate ...``: seed-data, backfill, fleet, technicians."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from fieldops.cli import int_between, positive_float
from fieldops.clock import service_clock
from fieldops.config import Settings
from fieldops.db import connect
from fieldops.db.repo import catalog

log = logging.getLogger(__name__)

MAX_DEVICES = 1_000_000
MAX_TECHNICIANS = 10_000
MAX_BACKFILL_DAYS = 3650.0
MAX_WARNING_H = 24 * 365.0
MAX_WINDOW = 65_535  # MQTT packet identifiers (simulators.fleet.MAX_INFLIGHT)


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="simulated devices and technicians")
    ssub = sim.add_subparsers(dest="simulate_command", required=True)

    p = ssub.add_parser("seed-data", help="create the Munich demo world (once)")
    p.add_argument("--devices", type=int_between(1, MAX_DEVICES), default=500)
    p.add_argument("--technicians", type=int_between(1, MAX_TECHNICIANS), default=20)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_seed_data)

    p = ssub.add_parser("backfill", help="write N days of history straight into the database")
    p.add_argument("--days", type=positive_float(MAX_BACKFILL_DAYS), default=30.0)
    p.add_argument("--devices", type=int_between(1, MAX_DEVICES), default=None, help="first M devices (default: all)")
    p.add_argument("--resolution-s", type=int_between(1, 86_400), default=600)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--warning-h", type=positive_float(MAX_WARNING_H), default=72.0,
                   help="nominal length of the degradation phase before a failure (hours)")
    p.add_argument("--no-jobs", action="store_true",
                   help="record repairs only as ground truth, not as completed jobs")
    p.set_defaults(func=cmd_backfill)

    p = ssub.add_parser("fleet", help="run the devices live over MQTT")
    p.add_argument("--devices", type=int_between(1, MAX_DEVICES), default=None, help="first M devices (default: all)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int_between(1, 10_000), default=1, help="readings per message, like a gateway")
    p.add_argument("--window", type=int_between(1, MAX_WINDOW), default=1000, help="unacknowledged QoS 1 messages per device")
    p.add_argument("--interval-s", type=positive_float(), default=None, help="reading interval (default: per model)")
    p.add_argument("--duration-s", type=positive_float(), default=None, help="stop after this many real seconds")
    p.add_argument("--passwords", type=Path, default=None,
                   help="JSON serial -> password (default: derived from FIELDOPS_SECRET_KEY)")
    p.add_argument("--fault", action="append", default=[], metavar="SERIAL:MODE:HOURS[:sudden]",
                   help="make a device fail with a mode in about HOURS, after a degradation phase of "
                        "that length or suddenly (repeatable)")
    p.add_argument("--report-every-s", type=positive_float(), default=60.0, help="real seconds between progress lines")
    p.add_argument("--state-every-s", type=positive_float(), default=30.0,
                   help="real seconds between saves of the hidden state that technicians inspect")
    p.set_defaults(func=cmd_fleet)

    p = ssub.add_parser("technicians", help="technicians who work through today's routes")
    p.add_argument("--duration-s", type=positive_float(), default=None, help="stop after this many real seconds")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--position-every-s", type=positive_float(), default=5.0)
    p.add_argument("--web-url", default=None,
                   help="web API to sign in to (default http://FIELDOPS_WEB_HOST:FIELDOPS_WEB_PORT)")
    p.add_argument("--in-process", action="store_true", help="call the service layer directly instead")
    p.add_argument("--password-env", default="FIELDOPS_DEMO_PASSWORD",
                   help="environment variable with the password of the tech<id> accounts")
    p.add_argument("--dispatcher", default="dispatcher",
                   help="account that releases scheduled jobs when a technician is ready ('' = a human does)")
    p.set_defaults(func=cmd_technicians)


def cmd_seed_data(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.seed import seed_data

    with connect(settings.require_database_url()) as conn:
        result = seed_data(conn, now=service_clock(settings).now(), secret=settings.secret_key,
                           devices=args.devices, technicians=args.technicians, seed=args.seed)
        conn.commit()
    sys.stdout.write(json.dumps({"created": result.created, "devices": result.devices,
                                 "technicians": result.technicians, "sites": result.sites}) + "\n")
    return 0


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.backfill import backfill, record_in_simulator_schema

    url = settings.require_database_url()
    recorder = record_in_simulator_schema
    if not args.no_jobs:
        from simulators.history import JobHistory

        with connect(url) as conn:
            recorder = JobHistory(conn)
    result = backfill(url, days=args.days, devices=args.devices, resolution_s=args.resolution_s,
                      seed=args.seed, end=service_clock(settings).now(), recorder=recorder,
                      warning_h=args.warning_h)
    sys.stdout.write(json.dumps({
        "devices": result.devices, "readings": result.readings, "failures": result.failures,
        "visits": result.visits, "open_faults": len(result.open_faults),
        "seconds": round(result.generate_s + result.write_s + result.rollup_s, 2),
    }) + "\n")
    return 0


def cmd_fleet(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.fleet import FaultInjection, Fleet, FleetConfig, FleetDevice
    from simulators.models import MODEL_SPECS
    from simulators.seed import device_password

    url = settings.require_database_url()
    with connect(url) as conn:
        devices = [FleetDevice(d.id, d.serial, d.model_code) for d in catalog.devices(conn)
                   if d.model_code in MODEL_SPECS]
    devices = devices[: args.devices] if args.devices is not None else devices
    try:
        faults = [FaultInjection.parse(text) for text in args.fault]
    except ValueError as exc:
        sys.stderr.write(f"fieldops simulate fleet: {exc}\n")
        return 2
    if args.passwords is not None:
        from ingest.provision import read_credentials

        if not args.passwords.is_file():
            sys.stderr.write(f"fieldops simulate fleet: --passwords {args.passwords}: no such file\n")
            return 2
        try:
            passwords = read_credentials(args.passwords)
        except ValueError as exc:
            sys.stderr.write(f"fieldops simulate fleet: --passwords {exc}\n")
            return 2
        missing = [d.serial for d in devices if d.serial not in passwords]
        if missing:
            sys.stderr.write(f"fieldops simulate fleet: --passwords {args.passwords}: no password for "
                             f"{len(missing)} device(s), e.g. {', '.join(missing[:3])}\n")
            return 2
    else:
        def passwords(serial: str) -> str:
            return device_password(settings.secret_key, serial)
    config = FleetConfig(host=settings.mqtt_host or "127.0.0.1", port=settings.mqtt_port, tls=settings.mqtt_tls,
                         seed=args.seed, batch=args.batch, window=args.window, interval_s=args.interval_s,
                         state_every_s=args.state_every_s)
    fleet = Fleet(devices, passwords, service_clock(settings), config, conninfo=url)
    try:
        for fault in faults:
            fleet.inject(fault)
    except ValueError as exc:
        sys.stderr.write(f"fieldops simulate fleet: {exc}\n")
        return 2
    log.info("fleet: %d devices to %s:%d", len(devices), config.host, config.port)
    stop = _stop_on_sigterm()
    fleet.connect()
    try:
        end = None if args.duration_s is None else time.monotonic() + args.duration_s
        report_at = time.monotonic() + args.report_every_s
        while not stop and (end is None or time.monotonic() < end):
            fleet.step()
            if time.monotonic() >= report_at:
                report_at = time.monotonic() + args.report_every_s
                log.info("fleet: %s", dataclasses.asdict(fleet.stats))
    except KeyboardInterrupt:
        pass
    finally:
        fleet.close()
    # the final count on stdout: readings the broker acknowledged, which ingest must all store
    sys.stdout.write(json.dumps({"fleet_stopped": dataclasses.asdict(fleet.stats)}) + "\n")
    sys.stdout.flush()
    return 0


def _stop_on_sigterm() -> list[int]:
    """A list that becomes non-empty on SIGTERM, so a supervised process ends its loop cleanly."""
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    return received


def web_url(settings: Settings) -> str:
    """The web server's URL from its bind settings (a wildcard bind is reached on loopback)."""
    host = settings.web_host if settings.web_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


def cmd_technicians(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.technicians import InProcessJobsClient, run_technicians

    url = settings.require_database_url()
    if args.in_process:
        client = InProcessJobsClient(url)
    else:
        from simulators.web_client import Credentials, WebJobsClient

        password = os.environ.get(args.password_env, "")
        if not password:
            sys.stderr.write(f"fieldops simulate technicians: set {args.password_env} to the technicians' "
                             "web password (or use --in-process)\n")
            return 2
        desk = Credentials(args.dispatcher, password) if args.dispatcher else None
        client = WebJobsClient(args.web_url or web_url(settings), url, password, dispatcher=desk)
    try:
        run_technicians(client, client.technicians(), service_clock(settings), duration_s=args.duration_s,
                        seed=args.seed, position_every_s=args.position_every_s, today=service_clock(settings).now())
    except KeyboardInterrupt:
        log.info("technicians stopped")
    finally:
        client.close()
    return 0
