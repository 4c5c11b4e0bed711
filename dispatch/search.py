"""Improvement search after the routing solver's plan: ruin and recreate (SISR) on the
project's :class:`~dispatch.problem.Problem`, compiled with numba (see
:mod:`dispatch.search_kernel`). No OR-Tools here; the solver checks the result against its
own model before using it.

What the search models: travel cost (``travel_s`` and ``distance_m`` weights), customer
windows (hard, several per job allowed), shift start and end (hard, with bounded overtime at
``overtime_per_s``), load capacity, skills and dispatcher assignments (as allowed
technicians), response-deadline lateness by priority (soft), disruption for moving a
dispatched job, drop penalties by priority (``override_dropped`` for assigned jobs), and each
technician's meal break as the solver models it (taken where the technician is, between
stops, before leaving or after coming back, starting inside its window).

What it leaves alone: every route holding a job it does not move stays exactly as the solver
planned it. It does not move jobs that need parts
(pickups and van stock), pinned (en route, on site) jobs and jobs with a locked position or
start time; such jobs keep their place, and a job of that kind that was unassigned stays so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dispatch import search_kernel as kernel
from dispatch.problem import Job, Problem, Technician

log = logging.getLogger(__name__)

BIG = 10**9
NEIGHBOURS = 100
# SISR: mean jobs removed per iteration, longest string, blink rate, split depth; routes of
# this many nearest neighbours are tried for an insertion
RUIN = np.array([10.0, 10.0, 0.01, 0.5, 30.0])
# temperature from this many average arcs down to the last one
T_START, T_END = 1.0, 0.01
CHUNK = 200


@dataclass(frozen=True, slots=True)
class Improvement:
    """The search's best plan for the routes it was allowed to change."""

    routes: dict[int, tuple[int, ...]]  # technician id -> job ids in order
    cost: int  # search cost of the changed routes plus their unassigned jobs
    start_cost: int
    iterations: int


def movable(job: Job) -> bool:
    """A job the search may move: no parts, not pinned, no locked position or start."""
    return (not job.parts and job.pinned_technician is None and job.locked_position is None
            and job.locked_start_s is None)


def _allowed_starts(job: Job) -> list[tuple[int, int]]:
    """Allowed start intervals, as the solver's time dimension sets them: from the earliest
    window start (not before 0) to the latest window end, minus gaps between consecutive
    windows in start order."""
    if not job.windows:
        return [(0, BIG)]
    ws = sorted(job.windows, key=lambda w: w.start_s)
    lo, hi = max(ws[0].start_s, 0), max(w.end_s for w in ws)
    out, cur = [], lo
    for a, b in zip(ws, ws[1:], strict=False):
        if b.start_s - 1 >= a.end_s + 1:
            out.append((cur, a.end_s))
            cur = b.start_s
    out.append((cur, hi))
    return [(a, b) for a, b in out if a <= b]


class _Arrays:
    """The changeable part of a problem as arrays for the kernel."""

    def __init__(self, problem: Problem, techs: list[Technician], jobs: list[Job]) -> None:
        w = problem.weights
        dur = np.asarray(problem.duration_s, dtype=np.int64)
        dist = np.asarray(problem.distance_m, dtype=np.int64)
        self.T = dur
        self.C = w.travel_s * dur + w.distance_m * dist
        n, m = len(jobs), len(techs)
        self.loc = np.array([j.location for j in jobs], dtype=np.int64)
        self.svc = np.array([j.duration_s for j in jobs], dtype=np.int64)
        self.dem = np.array([j.demand for j in jobs], dtype=np.int64)
        wins = [_allowed_starts(j) for j in jobs]
        k = max([len(x) for x in wins] + [1])
        self.wlo = np.zeros((n, k), dtype=np.int64)
        self.whi = np.zeros((n, k), dtype=np.int64)
        self.nw = np.array([len(x) for x in wins], dtype=np.int64)
        for i, x in enumerate(wins):
            for q, (a, b) in enumerate(x):
                self.wlo[i, q], self.whi[i, q] = a, b
        self.due = np.array([kernel.NONE if j.response_due_s is None else max(0, j.response_due_s)
                             for j in jobs], dtype=np.int64)
        self.latew = np.array([w.lateness(j.priority) for j in jobs], dtype=np.int64)
        self.drop = np.array([w.override_dropped if j.assigned_technician is not None
                              else w.drop(j.priority) for j in jobs], dtype=np.int64)
        self.jv = np.full((n, m), -1, dtype=np.int64)
        for a, j in enumerate(jobs):
            for v, t in enumerate(techs):
                if t.has_skills(j.skills) and j.assigned_technician in (None, t.id):
                    moved = j.current_technician not in (None, t.id)
                    self.jv[a, v] = w.disruption if moved else 0
        self.vstart = np.array([t.start for t in techs], dtype=np.int64)
        self.vend = np.array([t.end for t in techs], dtype=np.int64)
        self.vt0 = np.array([t.shift_start_s for t in techs], dtype=np.int64)
        self.vhard = np.array([t.shift_end_s + t.max_overtime_s for t in techs], dtype=np.int64)
        self.vsoft = np.array([t.shift_end_s for t in techs], dtype=np.int64)
        self.votw = np.array([w.overtime_per_s if t.max_overtime_s else 0 for t in techs],
                             dtype=np.int64)
        breaks = [t.meal_break for t in techs]
        self.beb = np.array([0 if b is None else b.earliest_s for b in breaks], dtype=np.int64)
        self.blb = np.array([0 if b is None else b.latest_end_s - b.duration_s for b in breaks],
                            dtype=np.int64)
        self.bdur = np.array([0 if b is None else b.duration_s for b in breaks], dtype=np.int64)
        self.vcap = np.array([BIG if t.capacity is None else t.capacity for t in techs],
                             dtype=np.int64)
        self.soft = bool((self.due != kernel.NONE).any() or self.votw.any())
        between = self.C[np.ix_(self.loc, self.loc)].astype(np.float64)
        np.fill_diagonal(between, np.inf)
        k = min(NEIGHBOURS, n - 1)
        self.adj = (np.argsort(between, axis=1, kind="stable")[:, :k] if k > 0
                    else np.full((n, 1), -1)).astype(np.int64)
        depot = techs[0].start if techs else 0
        self.far = self.C[depot, self.loc].astype(np.float64)

    def kernel_args(self) -> tuple:
        return (self.T, self.C, self.loc, self.svc, self.dem, self.wlo, self.whi, self.nw,
                self.due, self.latew, self.drop, self.jv, self.adj, self.far, self.vstart,
                self.vend, self.vt0, self.vhard, self.vsoft, self.votw, self.vcap, self.soft,
                self.beb, self.blb, self.bdur)


def improve(problem: Problem, routes: Mapping[int, Sequence[int]], unassigned: Sequence[int],
            time_limit_s: float, seed: int = 0, iterations: int | None = None
            ) -> Improvement | None:
    """Improve ``routes`` (technician id -> job ids in order, ``-j`` for a part pickup) and
    try to place the ``unassigned`` job ids, for ``time_limit_s`` or, when given, exactly
    ``iterations`` iterations whatever the time (then the result depends only on the inputs
    and ``seed``). Returns the searched technicians' best routes (never costlier than the
    start), or None when nothing could be searched."""
    jobs_by_id = {j.id: j for j in problem.jobs}
    frozen_jobs = {abs(x) for r in routes.values() for x in r
                   if x < 0 or not movable(jobs_by_id[abs(x)])}
    techs = [t for t in problem.technicians
             if not any(abs(x) in frozen_jobs for x in routes.get(t.id, ()))]
    mine = {t.id for t in techs}
    elsewhere = {x for t, r in routes.items() if t not in mine for x in r}
    jobs = [jobs_by_id[x] for t in techs for x in routes.get(t.id, ())]
    jobs += [jobs_by_id[x] for x in unassigned if x not in elsewhere and movable(jobs_by_id[x])]
    if not techs or not jobs:
        return None
    arrays = _Arrays(problem, techs, jobs)
    index = {j.id: a for a, j in enumerate(jobs)}
    n, m = len(jobs), len(techs)
    seq = np.zeros((m, n + 1), dtype=np.int64)
    ln = np.zeros(m, dtype=np.int64)
    st = np.zeros((m, n + 1), dtype=np.int64)
    late = np.zeros((m, n + 1), dtype=np.int64)
    load, cost, end = (np.zeros(m, dtype=np.int64) for _ in range(3))
    where = np.full(n, -1, dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)
    a = arrays
    for v, t in enumerate(techs):
        r = [index[x] for x in routes.get(t.id, ())]
        seq[v, :len(r)] = r
        ln[v] = len(r)
        ok = kernel.update_route(v, seq, ln, st, late, load, cost, end, where, pos, a.T, a.C,
                                 a.loc, a.svc, a.dem, a.wlo, a.whi, a.nw, a.due, a.latew, a.jv,
                                 a.vstart, a.vend, a.vt0, a.vhard, a.vsoft, a.votw, a.beb,
                                 a.blb, a.bdur)
        if not ok or load[v] > a.vcap[v] or any(a.jv[x, v] < 0 for x in r):
            log.warning("search skipped: technician %s's route is infeasible in its model", t.id)
            return None
    start = int(cost.sum() + a.drop[where < 0].sum())
    best = np.array([start, start], dtype=np.int64)
    bseq, bln = seq.copy(), ln.copy()
    arcs = max(1, int(ln.sum() + (ln > 0).sum()))
    travel = max(1.0, float(cost.sum()) / arcs)
    t_hi, t_lo = T_START * travel, T_END * travel
    rng = np.array([(seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64 or 1],
                   dtype=np.uint64)
    began = time.monotonic()
    done = 0
    total = iterations if iterations is not None else None
    while True:
        if total is not None:
            step = min(CHUNK, total - done)
            frac0, frac1 = done / total, (done + step) / total
        else:
            frac0 = (time.monotonic() - began) / max(time_limit_s, 1e-9)
            step, frac1 = CHUNK, frac0
        if step <= 0 or frac0 >= 1.0:
            break
        hi = t_hi * (t_lo / t_hi) ** frac0
        lo = t_hi * (t_lo / t_hi) ** frac1
        kernel.search(step, hi, lo, rng, RUIN, seq, ln, st, late, load, cost, end, where, pos,
                      bseq, bln, best, *a.kernel_args())
        done += step
    out = {t.id: tuple(jobs[x].id for x in bseq[v, :bln[v]]) for v, t in enumerate(techs)}
    log.info("search: %d iterations, cost %d -> %d", done, start, int(best[0]))
    return Improvement(out, int(best[0]), start, done)
