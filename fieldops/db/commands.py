"""``fieldops db ...``: migrate, maintain partitions, show status."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from fieldops.clock import utcnow
from fieldops.config import Settings
from fieldops.db import connect, schema
from fieldops.db.migrate import applied, discover, migrate

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database schema and maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)
    dbsub.add_parser("maintain", help="create partitions ahead, drop expired ones").set_defaults(
        func=cmd_maintain
    )
    dbsub.add_parser("status", help="applied migrations and storage flavor").set_defaults(func=cmd_status)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    done = migrate(settings.require_database_url(), settings)
    log.info("%d migration(s) applied", len(done))
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), autocommit=True) as conn:
        result = schema.maintain(conn, utcnow(), retention_days=settings.telemetry_retention_days,
                                 ahead_days=settings.partitions_ahead_days)
    log.info("partitions created %(created)d, dropped %(dropped)d", result)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), autocommit=True) as conn:
        have = applied(conn)
        status = {
            "flavor": schema.flavor(conn).value if have else None,
            "applied": sorted(have),
            "pending": [m.version for m in discover() if m.version not in have],
        }
    sys.stdout.write(json.dumps(status) + "\n")
    return 0
