"""Planning runs: one-shot ``plan_once`` and the re-planning ``run_loop``.

The loop LISTENs on the events channel and re-plans when a job arrives or changes (priority,
status, ETA) or a dispatcher overrides; when technicians only report positions, at most every
``position_every_s`` (phones report every few seconds: re-planning on each would keep the solver
busy and make every plan, and a dispatcher's preview of the next one, stale at once); otherwise
every ``interval_s``. Each run warm-starts from the active plan and commits only a feasible plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import psycopg
from psycopg import sql

from dispatch.overrides import OVERRIDE
from dispatch.problem import Params, Solution
from dispatch.solver import solve
from dispatch.store import active_routes, commit_plan, load_problem
from dispatch.travel import TravelProvider
from fieldops import events
from fieldops.db.pool import connect
from fieldops.service.errors import ConflictError, TransitionError

log = logging.getLogger(__name__)

TRIGGERS = frozenset({events.JOB_CREATED, events.JOB_UPDATED, events.JOB_STATUS,
                      events.TECHNICIAN_POSITION, OVERRIDE})
ATTEMPTS = 3


def plan_once(conn: psycopg.Connection, now: datetime, params: Params, provider: TravelProvider,
              *, trigger: str = "manual") -> tuple[int, Solution]:
    """Load, solve (warm-started from the active plan) and commit; retried when jobs change meanwhile."""
    for attempt in range(1, ATTEMPTS + 1):
        loaded = load_problem(conn, now, provider)
        warm = active_routes(conn)
        conn.commit()
        solution = solve(loaded.problem, replace(params, initial_routes=warm or None))
        try:
            plan_id = commit_plan(conn, loaded, solution, now=now, trigger=trigger)
            conn.commit()
            return plan_id, solution
        except (ConflictError, TransitionError) as exc:  # a job changed (or finished) during the solve
            conn.rollback()
            log.info("plan attempt %d: %s; re-planning", attempt, exc)
    raise ConflictError("jobs", f"jobs kept changing during {ATTEMPTS} planning attempts")


def _pending(conn: psycopg.Connection, after: int) -> list[tuple[int, str]]:
    """(commit position, kind) of events committed after ``after``, in commit order.

    Events written by a plan commit (the transaction that also wrote a plan-change event) are
    left out: a plan's own assignments and ETAs are not a reason to plan again.
    """
    return [(int(seq), kind) for seq, kind in conn.execute(
        "SELECT e.commit_seq, e.kind FROM events e WHERE e.commit_seq > %s AND NOT EXISTS ("
        " SELECT 1 FROM events p WHERE p.kind = %s AND p.commit_seq > %s AND p.xmin = e.xmin)"
        " ORDER BY e.commit_seq",
        (after, events.PLAN_CHANGED, after)).fetchall()]


def run_loop(conninfo: str, now: Callable[[], datetime], params: Params, provider: TravelProvider,
             *, interval_s: float = 300.0, position_every_s: float = 60.0,
             max_runs: int | None = None) -> int:
    """Re-plan on relevant events (positions alone at most every ``position_every_s``) and every
    ``interval_s``; returns the number of plans made."""
    listener = connect(conninfo, autocommit=True)
    work = connect(conninfo)
    runs = 0
    try:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(events.CHANNEL)))
        cursor = 0
        trigger = "start"
        planned_at = time.monotonic()
        wait_s = interval_s
        while max_runs is None or runs < max_runs:
            if trigger:
                # events committed from here on are seen by the next pass, even those that
                # commit while this plan is being solved (positions follow commit order)
                cursor = events.last_commit_seq(work)
                work.commit()
                try:
                    plan_once(work, now(), params, provider, trigger=trigger)
                    runs += 1
                except ConflictError as exc:  # jobs kept changing: their events trigger the next run
                    work.rollback()
                    log.warning("re-plan deferred (%s): %s", trigger, exc)
                except Exception:  # one failed run must not stop the loop
                    work.rollback()
                    log.exception("re-plan failed (%s)", trigger)
                planned_at = time.monotonic()
            notified = any(True for _ in listener.notifies(timeout=wait_s, stop_after=1))
            pending = _pending(work, cursor)
            work.commit()
            relevant = [kind for _, kind in pending if kind in TRIGGERS]
            wait_s = interval_s
            others = [kind for kind in relevant if kind != events.TECHNICIAN_POSITION]
            if relevant and not others:
                due_in = position_every_s - (time.monotonic() - planned_at)
                if due_in > 0:  # positions only: they stay pending (cursor kept) until due
                    trigger, wait_s = "", due_in
                    continue
            relevant = others + [kind for kind in relevant if kind not in others]
            # our own commit's NOTIFY wakes us with nothing new: that is not a reason to re-plan
            trigger = relevant[0] if relevant else ("" if notified else "periodic")
            if not relevant:
                cursor = max([cursor, *(seq for seq, _ in pending)])
    finally:
        listener.close()
        work.close()
    return runs
