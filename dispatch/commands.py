"""``fieldops dispatch ...``: plan once, run the re-planning loop, record a dispatcher override."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from dispatch import overrides
from fieldops.cli import MAX_DB_ID, db_id, int_between, positive_float
from fieldops.clock import service_clock
from fieldops.config import Settings
from fieldops.db import connect
from fieldops.service.errors import ServiceError

log = logging.getLogger(__name__)

MIN_TIME_LIMIT_S = 0.5  # below this the routing solver may not find even a first plan
MAX_TIME_LIMIT_S = 3600.0


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dispatch", help="plan technicians, routes and parts")
    dsub = d.add_subparsers(dest="dispatch_command", required=True)
    plan = dsub.add_parser("plan", help="plan once and commit")
    plan.add_argument("--time-limit", type=positive_float(MAX_TIME_LIMIT_S, low=MIN_TIME_LIMIT_S), default=10.0, help="search seconds")
    plan.set_defaults(func=cmd_plan)
    loop = dsub.add_parser("loop", help="re-plan on events and periodically")
    loop.add_argument("--time-limit", type=positive_float(MAX_TIME_LIMIT_S, low=MIN_TIME_LIMIT_S), default=5.0, help="search seconds per re-plan")
    loop.add_argument("--interval", type=positive_float(), default=300.0, help="seconds between periodic re-plans")
    loop.add_argument("--position-every", type=positive_float(), default=60.0,
                      help="seconds at least between re-plans caused by technicians' positions alone")
    loop.set_defaults(func=cmd_loop, process_name="dispatch")
    ov = dsub.add_parser("override", help="assign, move, lock, unlock or unassign a job")
    ov.add_argument("action", choices=overrides.ACTIONS)
    ov.add_argument("job_id", type=db_id)
    ov.add_argument("--technician", type=db_id)
    ov.add_argument("--position", type=int_between(0, MAX_DB_ID))
    ov.add_argument("--force", action="store_true", help="accept breaking a hard rule, with a warning")
    ov.add_argument("--actor", default="dispatcher")
    ov.set_defaults(func=cmd_override)


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from dispatch.loop import plan_once  # OR-Tools and numba load only for the commands that plan
    from dispatch.problem import Params
    from dispatch.travel import provider_for

    with connect(settings.require_database_url()) as conn:
        plan_id, solution = plan_once(conn, service_clock(settings).now(), Params(time_limit_s=args.time_limit),
                                      provider_for(settings.osrm_url))
    sys.stdout.write(json.dumps({
        "plan_id": plan_id, "routes": {r.technician_id: r.job_ids() for r in solution.routes},
        "unassigned": {u.job_id: u.reason for u in solution.unassigned}}) + "\n")
    return 0


def cmd_loop(args: argparse.Namespace, settings: Settings) -> int:
    from dispatch.loop import run_loop
    from dispatch.problem import Params
    from dispatch.travel import provider_for

    clock = service_clock(settings)
    run_loop(settings.require_database_url(), clock.now, Params(time_limit_s=args.time_limit),
             provider_for(settings.osrm_url), interval_s=args.interval, position_every_s=args.position_every)
    return 0


def cmd_override(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url()) as conn:
        try:
            warning = overrides.apply(conn, args.action, args.job_id, actor=args.actor,
                                      now=service_clock(settings).now(), technician_id=args.technician,
                                      position=args.position, force=args.force)
        except ServiceError as exc:
            conn.rollback()
            sys.stderr.write(f"refused: {exc}\n")
            return 1
        conn.commit()
    if warning:
        sys.stderr.write(f"accepted with warning: {warning}\n")
    return 0
