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
from datetime import datetime
from pathlib import Path

from fieldops.config import Settings
from fieldops.db import connect
from fieldops.runtime.mosquitto import broker_user, share_with_broker
from ingest.consumer import Consumer, ConsumerConfig
from ingest.metrics import serve
from ingest.provision import ServiceAccount, provision, save_credentials, write_broker_files_from_db

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
    pr.add_argument("--count", type=int, default=0, help="also create N devices named PREFIX0001...")
    pr.add_argument("--prefix", default="dev-")
    pr.add_argument("--model", help="device model code for new devices")
    pr.add_argument("--site-id", type=int, help="site of new devices")
    pr.add_argument("--installed-at", type=datetime.fromisoformat, help="ISO time with offset")
    pr.add_argument("--rotate", action="store_true", help="new passwords for devices that have one")
    pr.add_argument("--credentials", type=Path, help="merge serial -> password into this JSON file (0600)")
    pr.add_argument("--broker-dir", type=Path, help="write mosquitto.conf, passwd and acl here")
    pr.add_argument("--bind", default="127.0.0.1", help="listener address ('' = all interfaces)")
    pr.add_argument("--chown", default="", help="UID:GID to own the broker files (e.g. 1883:1883)")
    pr.add_argument("--reload-pid", type=int, help="send SIGHUP to this broker process afterwards")
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
    serials = list(args.serials) + [f"{args.prefix}{i:04d}" for i in range(1, args.count + 1)]
    with connect(settings.database_url) as conn:
        try:
            passwords = provision(conn, serials, model_code=args.model, site_id=args.site_id,
                                  installed_at=args.installed_at, rotate=args.rotate)
        except (ValueError, LookupError) as exc:
            sys.stderr.write(f"fieldops devices provision: {exc}\n")
            return 2
        conn.commit()
        if args.credentials:
            save_credentials(args.credentials, passwords)
        if args.broker_dir:
            if not settings.mqtt_password:
                sys.stderr.write("fieldops devices provision: FIELDOPS_MQTT_PASSWORD (ingest account) "
                                 "is not set\n")
                return 2
            ingest = ServiceAccount(settings.mqtt_username, settings.mqtt_password, "read")
            run_as = broker_user() if not args.chown else None
            write_broker_files_from_db(conn, args.broker_dir, port=settings.mqtt_port, services=[ingest],
                                       bind=args.bind, run_as=run_as)
            _hand_over(args.broker_dir, args.chown)
    if args.reload_pid:
        os.kill(args.reload_pid, signal.SIGHUP)
    sys.stdout.write(json.dumps({"devices": len(serials), "new_passwords": len(passwords)}) + "\n")
    return 0


def _hand_over(directory: Path, owner: str) -> None:
    """Make the broker files readable by the user the broker runs as."""
    paths = [directory, directory / "data", *directory.iterdir()]
    if owner:
        uid, _, gid = owner.partition(":")
        for path in paths:
            os.chown(path, int(uid), int(gid or uid))
        return
    for path in paths:
        share_with_broker(path)
