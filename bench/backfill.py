"""Backfill bench: seed a world, write N days of history for M devices, print one JSON line.

    python -m bench.backfill [--devices 200] [--days 30] [--resolution-s 600]

Runs against FIELDOPS_DATABASE_URL if set (an empty, migrated database), else starts a private
PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.runtime.postgres import LocalPostgres
from simulators.backfill import backfill
from simulators.history import JobHistory
from simulators.seed import seed_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--resolution-s", type=int, default=600)
    parser.add_argument("--jobs", action="store_true", help="also write repairs as completed jobs")
    args = parser.parse_args()
    url = os.environ.get("FIELDOPS_DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp:
        cluster = None
        if not url:
            cluster = LocalPostgres(Path(tmp) / "pg", fast_unsafe=True).start()
            url = cluster.url
        try:
            migrate(url, Settings(env="test"))
            end = datetime(2026, 3, 2, tzinfo=UTC)
            with psycopg.connect(url) as conn:
                seed_data(conn, now=end, secret="bench", devices=args.devices, technicians=20)
                conn.commit()
                recorder = JobHistory(conn) if args.jobs else None
            started = time.perf_counter()
            kwargs = {"recorder": recorder} if recorder else {}
            result = backfill(url, days=args.days, devices=args.devices, resolution_s=args.resolution_s,
                              seed=7, end=end, **kwargs)
            total = time.perf_counter() - started
        finally:
            if cluster is not None:
                cluster.stop("immediate")
    print(json.dumps({
        "bench": "backfill", "devices": result.devices, "days": args.days, "resolution_s": args.resolution_s,
        "readings": result.readings, "failures": result.failures, "visits": result.visits,
        "jobs": bool(args.jobs), "generate_s": round(result.generate_s, 2), "write_s": round(result.write_s, 2),
        "rollup_s": round(result.rollup_s, 2), "total_s": round(total, 2),
        "readings_per_s": round(result.readings / total),
    }))


if __name__ == "__main__":
    main()
