"""``fieldops ingest`` (the consumer) and ``fieldops devices provision`` (credentials, broker files)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from fieldops.cli import UTC_EXAMPLE, aware_datetime, db_id, int_between
from fieldops.config import Settings
from fieldops.db import connect
from fieldops.runtime.mosquitto import broker_user, is_mosquitto, share_with_broker
from ingest.consumer import Consumer, ConsumerConfig
from ingest.metrics import serve
from ingest.provision import (
    ServiceAccount,
    provision,
    read_credentials,
    save_credentials,
    write_broker_files_from_db,
)

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="consume device telemetry, status and events from MQTT")
    d = ConsumerConfig()
    p.add_argument("--client-id", default=f"ingest-{socket.gethostname()}",
                   help="MQTT client id; keep it stable so the persistent session survives restarts")
    p.add_argument("--batch-messages", type=int, default=d.batch_messages)
    p.add_argument("--batch-bytes", type=int, default=d.batch_bytes)
    p.add_argument("--batch-age-ms", type=int, default=int(d.batch_age_s * 1000))
    p.add_argument("--buffer-messages", type=int, default=d.buffer_messages,
                   help="unacknowledged messages held at most (MQTT receive maximum)")
    p.add_argument("--max-payload-bytes", type=int, default=d.max_payload_bytes)
    p.add_argument("--metrics-port", type=int, default=9108, help="Prometheus /metrics port; -1: off")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--no-shared", action="store_true", help="plain instead of shared subscription")
    p.set_defaults(func=cmd_ingest)

    devices = sub.add_parser("devices", help="device administration")
    dsub = devices.add_subparsers(dest="devices_command", required=True)
    pr = dsub.add_parser("provision", help="create devices, set MQTT passwords, write the broker files")
    pr.add_argument("serials", nargs="*", help="device serials (existing or new)")
    pr.add_argument("--count", type=int_between(0, 100_000), default=0, help="also create N devices named PREFIX0001...")
    pr.add_argument("--prefix", default="dev-")
    pr.add_argument("--model", help="device model code for new devices")
    pr.add_argument("--site-id", type=db_id, help="site of new devices")
    pr.add_argument("--installed-at", type=aware_datetime, help=f"ISO time with a UTC offset, e.g. {UTC_EXAMPLE}")
    pr.add_argument("--rotate", action="store_true", help="new passwords for devices that have one")
    pr.add_argument("--credentials", type=Path, help="merge serial -> password into this JSON file (0600)")
    pr.add_argument("--broker-dir", type=Path, help="write mosquitto.conf, passwd and acl here")
    pr.add_argument("--bind", default="127.0.0.1", help="listener address ('' = all interfaces)")
    pr.add_argument("--chown", type=owner_ids, default=None, help="UID:GID to own the broker files (e.g. 1883:1883)")
    pr.add_argument("--reload-pid", type=broker_pid, help="send SIGHUP to this mosquitto process afterwards")
    pr.set_defaults(func=cmd_provision)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        sys.stderr.write("fieldops ingest: FIELDOPS_DATABASE_URL is not set\n")
        return 2
    try:
        config = ConsumerConfig(
            client_id=args.client_id, batch_messages=args.batch_messages, batch_bytes=args.batch_bytes,
            batch_age_s=args.batch_age_ms / 1000, buffer_messages=args.buffer_messages,
            max_payload_bytes=args.max_payload_bytes, shared=not args.no_shared,
        )
    except ValueError as exc:
        sys.stderr.write(f"fieldops ingest: {exc}\n")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer = Consumer(settings, config)
    if args.metrics_port >= 0:
        serve(consumer.metrics, args.metrics_port, args.metrics_host)
    log.info("ingest %s: batches of %d messages / %d bytes / %d ms, buffer %d", config.client_id,
             config.batch_messages, config.batch_bytes, args.batch_age_ms, config.buffer_messages)
    # Everything alive now (the imported modules) stays alive: keep it out of the collector's full
    # passes, which otherwise walk it again and again as batches allocate; and collect the young
    # generation less often (a batch allocates tens of thousands of short-lived containers).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    # The writer thread waits on the database a dozen times per batch and then needs the GIL back
    # from the parsing and network threads: hand it over sooner than the default 5 ms.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    consumer.run(stop)
    return 0


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        sys.stderr.write("fieldops devices provision: FIELDOPS_DATABASE_URL is not set\n")
        return 2
    problem = _preflight(args, settings)
    if problem:
        sys.stderr.write(f"fieldops devices provision: {problem}\n")
        return 2
    serials = list(args.serials) + [f"{args.prefix}{i:04d}" for i in range(1, args.count + 1)]
    with connect(settings.database_url) as conn:
        try:
            passwords = provision(conn, serials, model_code=args.model, site_id=args.site_id,
                                  installed_at=args.installed_at, rotate=args.rotate)
        except (ValueError, LookupError) as exc:
            conn.rollback()
            sys.stderr.write(f"fieldops devices provision: {exc}\n")
            return 2
        conn.commit()
        if args.credentials:
            try:
                save_credentials(args.credentials, passwords)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"fieldops devices provision: {len(passwords)} new password(s) are stored "
                                 f"(hashed) but could not be saved to {args.credentials}: {exc}; "
                                 "run again with --rotate to issue new ones\n")
                return 1
        if args.broker_dir:
            ingest = ServiceAccount(settings.mqtt_username, settings.mqtt_password, "read")
            run_as = broker_user() if args.chown is None else None
            try:
                write_broker_files_from_db(conn, args.broker_dir, port=settings.mqtt_port, services=[ingest],
                                           bind=args.bind, run_as=run_as)
                _hand_over(args.broker_dir, args.chown)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"fieldops devices provision: the devices are provisioned but the broker "
                                 f"files in {args.broker_dir} could not be written: {exc}\n")
                return 1
    sys.stdout.write(json.dumps({"devices": len(serials), "new_passwords": len(passwords)}) + "\n")
    if args.reload_pid is not None:
        problem = _not_a_broker(args.reload_pid)
        if problem:  # the broker ended, and its pid was reused, while the devices were provisioned
            sys.stderr.write(f"fieldops devices provision: done, but not reloading the broker: {problem}; "
                             "reload it yourself\n")
            return 1
        try:
            os.kill(args.reload_pid, signal.SIGHUP)
        except OSError as exc:
            sys.stderr.write(f"fieldops devices provision: done, but the broker (pid {args.reload_pid}) could "
                             f"not be told to reload: {exc.strerror or exc}; reload it yourself\n")
            return 1
    return 0


def broker_pid(text: str) -> int:
    """An argparse type for --reload-pid: one process id above 1 (0 and negative ids name process
    groups or every process, 1 is init)."""
    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id") from None
    if pid <= 1:
        raise argparse.ArgumentTypeError(f"must be the broker's process id (above 1), not {pid}")
    return pid


def owner_ids(text: str) -> tuple[int, int]:
    """An argparse type for --chown: ``UID[:GID]`` as numbers (GID defaults to UID)."""
    uid, _, gid = text.partition(":")
    try:
        ids = int(uid), int(gid or uid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected UID:GID as numbers (e.g. 1883:1883), not {text!r}") from None
    if min(ids) < 0:
        raise argparse.ArgumentTypeError(f"ids cannot be negative: {text!r}")
    return ids


def _preflight(args: argparse.Namespace, settings: Settings) -> str | None:
    """What makes the command's files or broker process unusable, found before any database write
    (a failure after the commit would lose the new passwords)."""
    if args.credentials:
        try:
            read_credentials(args.credentials)
        except ValueError as exc:
            return f"--credentials {exc}"
        problem = _unwritable(args.credentials.parent)
        if problem:
            return f"--credentials {args.credentials}: {problem}"
    if args.broker_dir:
        if not settings.mqtt_password:
            return "FIELDOPS_MQTT_PASSWORD (ingest account) is not set"
        problem = _unwritable(args.broker_dir)
        if problem:
            return f"--broker-dir {args.broker_dir}: {problem}"
    if args.reload_pid is not None:
        problem = _not_a_broker(args.reload_pid)
        if problem:
            return f"--reload-pid {args.reload_pid}: {problem}"
    return None


def _not_a_broker(pid: int) -> str | None:
    """Why process ``pid`` must not get the broker's SIGHUP (which ends most other programs), or None."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "no such process"
    except PermissionError:
        return "not allowed to signal that process"
    try:
        if not is_mosquitto(pid):
            return f"process {pid} is not mosquitto"
    except OSError as exc:
        return f"cannot tell whether process {pid} is mosquitto: {exc.strerror or exc}"
    return None


def _unwritable(directory: Path) -> str | None:
    """Why files cannot be written in ``directory`` (created if missing), or None."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the directory: {exc.strerror or exc}"
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        return "not a writable directory"
    return None


def _hand_over(directory: Path, owner: tuple[int, int] | None) -> None:
    """Make the broker files readable by the user the broker runs as."""
    paths = [directory, directory / "data", *directory.iterdir()]
    if owner is not None:
        for path in paths:
            os.chown(path, *owner)
        return
    for path in paths:
        share_with_broker(path)
