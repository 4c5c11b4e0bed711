"""``fieldops jobs ...``: open, list, show and move jobs; run the service loop; KPIs and reorders.

Results are JSON on stdout, one object per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import datetime, timedelta
from typing import Any

import psycopg

from fieldops.cli import MAX_DAYS, MAX_DB_ID, db_id, int_between, positive_float
from fieldops.clock import service_clock
from fieldops.config import Settings
from fieldops.db import connect
from fieldops.domain import GeoPoint, JobSource, JobStatus, JobType
from fieldops.service import jobs, kpis, parts, preventive, sla
from fieldops.service.errors import ServiceError

log = logging.getLogger(__name__)

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="service jobs: work orders, SLAs, parts, KPIs")
    jsub = p.add_subparsers(dest="jobs_command", required=True)

    create = jsub.add_parser("create", help="open a job (or update the open duplicate)")
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="device serial")
    target.add_argument("--site-id", type=db_id, help="site id (a job for the site, no device)")
    create.add_argument("--source", default=JobSource.CUSTOMER.value, choices=[s.value for s in JobSource])
    create.add_argument("--type", default=JobType.REPAIR.value, choices=[t.value for t in JobType])
    create.add_argument("--mode", help="failure mode code")
    create.add_argument("--priority", type=int_between(1, 4), default=3, help="1 critical .. 4 low")
    create.add_argument("--explanation", default="")
    create.add_argument("--actor", default="cli")
    create.set_defaults(func=cmd_create)

    listing = jsub.add_parser("list", help="open jobs, most urgent first")
    listing.add_argument("--technician-id", type=db_id)
    listing.add_argument("--site-id", type=db_id)
    listing.set_defaults(func=cmd_list)

    show = jsub.add_parser("show", help="one job with its audit trail")
    show.add_argument("job_id", type=db_id)
    show.set_defaults(func=cmd_show)

    move = jsub.add_parser("transition", help="move a job to another status")
    move.add_argument("job_id", type=db_id)
    move.add_argument("status", choices=[s.value for s in JobStatus])
    move.add_argument("--version", type=int_between(1, MAX_DB_ID), required=True, help="the version you read")
    move.add_argument("--technician-id", type=db_id)
    move.add_argument("--finding", choices=jobs.FINDINGS)
    move.add_argument("--note")
    move.add_argument("--actor", default="cli")
    move.set_defaults(func=cmd_transition)

    tick = jsub.add_parser("process-events",
                           help="device events -> jobs, preventive plans, SLA breaches, at-risk flags")
    tick.add_argument("--follow", action="store_true", help="repeat every --interval-s of service time")
    tick.add_argument("--interval-s", type=positive_float(), default=30.0,
                      help="service seconds between passes")
    tick.set_defaults(func=cmd_process_events)

    k = jsub.add_parser("kpis", help="service KPIs over a period")
    k.add_argument("--days", type=int_between(1, MAX_DAYS), default=30, help="period ending now")
    k.add_argument("--by", default="all", choices=kpis.GROUPINGS)
    k.set_defaults(func=cmd_kpis)

    jsub.add_parser("reorder", help="stock below its minimum").set_defaults(func=cmd_reorder)


def _emit(value: Any) -> None:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    sys.stdout.write(json.dumps(value, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, GeoPoint):
        return {"lat": value.lat, "lon": value.lon}
    return str(value)


def _guarded(conn: psycopg.Connection, action) -> int:
    """Run ``action`` and commit; a ServiceError is reported (with its field) and rolled back."""
    try:
        result = action()
    except ServiceError as exc:
        conn.rollback()
        sys.stderr.write(json.dumps({"error": str(exc), "field": exc.field}) + "\n")
        return 2
    conn.commit()
    _emit(result)
    return 0


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        device_id = None
        if args.device:
            row = conn.execute("SELECT id FROM devices WHERE serial = %s", (args.device,)).fetchone()
            if row is None:
                sys.stderr.write(json.dumps({"error": f"unknown device {args.device}", "field": "device"}) + "\n")
                return 2
            device_id = row[0]
        request = jobs.JobRequest(
            source=args.source, type=args.type, device_id=device_id, site_id=args.site_id,
            failure_mode=args.mode, priority=args.priority, explanation=args.explanation,
        )
        return _guarded(conn, lambda: jobs.create_job(conn, request, actor=args.actor, now=service_clock(settings).now()))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        for job in jobs.open_jobs(conn, technician_id=args.technician_id, site_id=args.site_id):
            _emit(job)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        return _guarded(conn, lambda: {
            "job": dataclasses.asdict(jobs.get_job(conn, args.job_id)),
            "events": [dataclasses.asdict(e) for e in jobs.job_events(conn, args.job_id)],
            "parts_used": [dataclasses.asdict(p) for p in parts.parts_used(conn, args.job_id)],
        })


def cmd_transition(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        return _guarded(conn, lambda: jobs.transition(
            conn, args.job_id, args.status, expected_version=args.version, actor=args.actor,
            now=service_clock(settings).now(), technician_id=args.technician_id, finding=args.finding, note=args.note,
        ))


def run_cycle(conn: psycopg.Connection, now: datetime) -> dict[str, Any]:
    """One pass of the service loop in one transaction: events, preventive plans, breaches, at-risk."""
    summary = jobs.process_device_events(conn, now)
    opened = preventive.open_due_jobs(conn, now)
    breaches = sla.detect_breaches(conn, now)
    flagged = sla.refresh_at_risk(conn)
    conn.commit()
    return {"at": now.isoformat(), "events": summary.handled, "created": len(summary.created),
            "merged": len(summary.merged), "storms": len(summary.storms), "refused": len(summary.failed),
            "preventive": len(opened),
            "breaches": len(breaches), "at_risk_changed": flagged}


def cmd_process_events(args: argparse.Namespace, settings: Settings) -> int:
    clock = service_clock(settings)
    with connect(settings.require_database_url()) as conn:
        while True:
            try:
                summary = run_cycle(conn, clock.now())
                # following, a pass that changed nothing says nothing (it runs every few seconds)
                if not args.follow or any(v for k, v in summary.items() if k != "at"):
                    _emit(summary)
            except (ServiceError, psycopg.DatabaseError) as exc:
                conn.rollback()
                log.error("service cycle failed: %s", exc)
                if not args.follow:
                    return 1
            if not args.follow:
                return 0
            clock.sleep(args.interval_s)


def cmd_kpis(args: argparse.Namespace, settings: Settings) -> int:
    now = service_clock(settings).now()
    with connect(settings.require_database_url()) as conn:
        for row in kpis.kpis(conn, now - timedelta(days=args.days), now, args.by):
            _emit(row)
    return 0


def cmd_reorder(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        for suggestion in parts.reorder_suggestions(conn):
            _emit(suggestion)
    return 0
