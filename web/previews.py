"""Re-plan previews kept in the database, so "apply" commits exactly the previewed plan.

A preview stores the solver's solution, what :func:`dispatch.store.commit_plan` needs to write it
(job versions and statuses, vans, forced-override warnings, the plan origin) and a fingerprint
of what it was solved against: the active plan, every open job's version and the overrides.
Applying compares the fingerprint under the plan lock and refuses when anything changed.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dispatch.problem import Objective, Problem, Route, Solution, Stop, Unassigned
from dispatch.store import Loaded
from fieldops.domain import JobStatus
from fieldops.service.jobs import OPEN

PREVIEW_ID_BYTES = 16


@dataclass(frozen=True, slots=True)
class Preview:
    id: str
    created_by: int
    created_at: datetime
    fingerprint: str
    loaded: Loaded
    solution: Solution
    applied_plan_id: int | None


def fingerprint(conn: psycopg.Connection) -> str:
    """A digest of the active plan id, each open job's version and every override row."""
    row = conn.execute(
        "SELECT md5(concat_ws('|', "
        " (SELECT max(id) FROM plans WHERE active), "
        " (SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM jobs WHERE status = ANY(%s)), "
        " (SELECT string_agg(concat_ws(':', job_id, technician_id, position, locked_start, forced), ',' "
        "  ORDER BY job_id) FROM dispatch_overrides)))",
        (list(OPEN),),
    ).fetchone()
    return str(row[0])


def _plan_json(loaded: Loaded, solution: Solution) -> dict[str, Any]:
    return {
        "origin": loaded.problem.origin.isoformat(),
        "versions": {str(k): v for k, v in loaded.versions.items()},
        "statuses": {str(k): str(v) for k, v in loaded.statuses.items()},
        "vans": {str(k): v for k, v in loaded.vans.items()},
        "forced": {str(k): v for k, v in loaded.forced.items()},
        "solution": asdict(solution),
    }


def _int_keys(mapping: dict[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in mapping.items()}


def _from_plan_json(data: dict[str, Any]) -> tuple[Loaded, Solution]:
    """The inverse of :func:`_plan_json`. The Problem holds only the origin: committing reads nothing else."""
    s = data["solution"]
    routes = tuple(Route(**{**r, "stops": tuple(Stop(**stop) for stop in r["stops"])}) for r in s["routes"])
    o = s["objective"]
    objective = Objective(**{**o, "lateness_s": _int_keys(o["lateness_s"]),
                             "unassigned": _int_keys(o["unassigned"])})
    solution = Solution(routes, tuple(Unassigned(**u) for u in s["unassigned"]), objective,
                        s["solve_time_s"], s["first_solution_s"])
    loaded = Loaded(
        problem=Problem((), (), (), (), origin=datetime.fromisoformat(data["origin"])),
        versions=_int_keys(data["versions"]),
        statuses={k: JobStatus(v) for k, v in _int_keys(data["statuses"]).items()},
        vans=_int_keys(data["vans"]),
        forced=_int_keys(data["forced"]),
    )
    return loaded, solution


def save(conn: psycopg.Connection, user_id: int, now: datetime, digest: str, loaded: Loaded,
         solution: Solution) -> str:
    """Store a preview and return its unguessable id."""
    preview_id = secrets.token_urlsafe(PREVIEW_ID_BYTES)
    conn.execute(
        "INSERT INTO plan_previews (id, created_by, created_at, fingerprint, plan) VALUES (%s, %s, %s, %s, %s)",
        (preview_id, user_id, now, digest, Jsonb(_plan_json(loaded, solution))),
    )
    return preview_id


def load(conn: psycopg.Connection, preview_id: str) -> Preview | None:
    """The stored preview, locked for this transaction, or None."""
    row = conn.execute(
        "SELECT id, created_by, created_at, fingerprint, plan, applied_plan_id FROM plan_previews "
        "WHERE id = %s FOR UPDATE",
        (preview_id,),
    ).fetchone()
    if row is None:
        return None
    loaded, solution = _from_plan_json(row[4])
    return Preview(row[0], row[1], row[2], row[3], loaded, solution, row[5])


def mark_applied(conn: psycopg.Connection, preview_id: str, plan_id: int) -> None:
    conn.execute("UPDATE plan_previews SET applied_plan_id = %s WHERE id = %s", (plan_id, preview_id))


def prune(conn: psycopg.Connection, before: datetime) -> int:
    """Delete previews created before ``before``; returns how many."""
    return conn.execute("DELETE FROM plan_previews WHERE created_at < %s", (before,)).rowcount
