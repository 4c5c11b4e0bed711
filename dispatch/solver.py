"""``solve(problem, params) -> Solution``: the only module that imports OR-Tools.

Model: one routing vehicle per technician (start and end nodes of its own), one node per way a
job can be served (from the van of the technician holding its parts, or with parts picked up
at a warehouse: then a pickup node is paired with it on the same route, earlier), a time
dimension (travel + service, waiting allowed), hard customer windows and shift bounds, soft
shift end (bounded overtime at a cost), the meal break as a break interval, soft response
deadlines, skills as allowed vehicles, drop penalties by priority, a per-technician
disruption dimension for moving dispatched jobs, and constraints for pinned and locked jobs. A
pinned job is under way: its windows no longer bind and its technician's day may run past the
shift as overtime as far as that job needs, so work under way never makes the model infeasible.
A large day is solved as regions of that model (:mod:`dispatch.regions`), merged into one plan.
Once it has a plan, ``_improve`` hands it to the improvement search of :mod:`dispatch.search`
for ``Params.search_share`` of the time limit and keeps the result only if this model accepts
it at no higher cost.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2
from ortools.util import optional_boolean_pb2

from dispatch import regions, search
from dispatch.parts import PartSources, allocate
from dispatch.problem import (
    REPRODUCIBLE_SEARCH_ITERATIONS,
    Job,
    Objective,
    Params,
    Problem,
    Route,
    Solution,
    Stop,
    Technician,
    Unassigned,
)

log = logging.getLogger(__name__)

BIG = 10**9
REGION_SEARCH_MIN_S = 0.5  # a region's search shorter than this is not worth its model
REGION_ROUNDS = 3  # searches of the regions after a large day's first plan


@dataclass(frozen=True, slots=True)
class _Node:
    """A routing node: a technician's start/end, a way of serving a job, or a part pickup."""

    kind: str  # start, end, job, pickup
    location: int
    service_s: int = 0
    job: Job | None = None
    technician: int | None = None  # start/end owner
    parts_from: str = ""  # job nodes: "", "van", "warehouse"
    warehouse: int | None = None


def _window_range(job: Job) -> tuple[int, int, list[tuple[int, int]]]:
    """(earliest start, latest start, gaps between windows); a pinned job is under way already,
    so its windows no longer bind (a late arrival shows as lateness, not as an impossible plan)."""
    if not job.windows or job.pinned_technician is not None:
        return 0, BIG, []
    ws = sorted(job.windows, key=lambda w: w.start_s)
    gaps = [(a.end_s + 1, b.start_s - 1) for a, b in zip(ws, ws[1:], strict=False)
            if b.start_s - 1 >= a.end_s + 1]
    return ws[0].start_s, max(w.end_s for w in ws), gaps


def _qualified(problem: Problem) -> tuple[dict[int, list[Technician]], dict[int, str]]:
    qualified: dict[int, list[Technician]] = {}
    reasons: dict[int, str] = {}
    for job in problem.jobs:
        techs = [t for t in problem.technicians if t.has_skills(job.skills)]
        forced = job.pinned_technician or job.assigned_technician
        if not techs:
            missing = sorted(job.skills - set().union(*(t.skills for t in problem.technicians))) \
                if problem.technicians else sorted(job.skills)
            label = ", ".join(missing) if missing else " and ".join(sorted(job.skills))
            reasons[job.id] = (f"no technician has skill {label}" if missing
                               else f"no technician has all of the skills {label}")
        elif forced is not None:
            techs = [t for t in techs if t.id == forced]
            if not techs:
                reasons[job.id] = (f"assigned technician {forced} lacks skill "
                                   + ", ".join(sorted(job.skills - problem.technician(forced).skills)))
        if job.id not in reasons and techs:
            lo, hi, _ = _window_range(job)
            if hi < 0 or lo > max(t.shift_end_s + t.max_overtime_s for t in techs):
                reasons[job.id] = "its customer windows lie outside every qualified shift"
        if job.id not in reasons:
            qualified[job.id] = techs
    return qualified, reasons


class _Model:
    def __init__(self, problem: Problem, params: Params) -> None:
        self.p = problem
        self.params = params
        self.w = problem.weights
        techs = problem.technicians
        self.v_of = {t.id: i for i, t in enumerate(techs)}
        self.nodes: list[_Node] = [_Node("start", t.start, technician=t.id) for t in techs]
        self.nodes += [_Node("end", t.end, technician=t.id) for t in techs]
        qualified, self.reasons = _qualified(problem)
        sources, part_reasons = allocate(problem, qualified)
        self.reasons.update(part_reasons)
        self.sources = sources
        self.breaks: dict[int, object] = {}
        self.allowed: dict[int, list[int]] = {}  # node -> vehicle indexes
        self.job_nodes: dict[int, list[int]] = {}
        self.pickup_of: dict[int, int] = {}  # job node -> pickup node
        wh_loc = {w.id: w.location for w in problem.warehouses}
        order = list(problem.jobs)
        if params.seed:  # the seed permutes node numbering, i.e. OR-Tools' tie-breaking
            random.Random(params.seed).shuffle(order)
        for job in order:
            if job.id in self.reasons:
                continue
            vehicles = [self.v_of[t.id] for t in qualified[job.id]]
            src = sources.get(job.id)
            opts: list[int] = []
            if src is None:
                opts.append(self._add(_Node("job", job.location, job.duration_s, job), vehicles))
            else:
                opts += self._part_options(job, src, vehicles, wh_loc)
            if not opts:
                self.reasons[job.id] = "the technician holding its parts cannot do it"
                continue
            self.job_nodes[job.id] = opts

    def _add(self, node: _Node, vehicles: list[int]) -> int:
        self.nodes.append(node)
        self.allowed[len(self.nodes) - 1] = vehicles
        return len(self.nodes) - 1

    def _part_options(self, job: Job, src: PartSources, vehicles: list[int],
                      wh_loc: dict[int, int]) -> list[int]:
        opts = []
        if src.van_technician is not None and self.v_of[src.van_technician] in vehicles:
            opts.append(self._add(_Node("job", job.location, job.duration_s, job, parts_from="van"),
                                  [self.v_of[src.van_technician]]))
        if src.warehouse is not None:
            d = self._add(_Node("job", job.location, job.duration_s, job, parts_from="warehouse",
                                warehouse=src.warehouse), vehicles)
            pk = self._add(_Node("pickup", wh_loc[src.warehouse], self.p.pickup_duration_s, job,
                                 warehouse=src.warehouse), vehicles)
            self.pickup_of[d] = pk
            opts.append(d)
        return opts

    # ---- building -------------------------------------------------------------------------
    def build(self) -> None:
        p, w = self.p, self.w
        n_veh = len(p.technicians)
        starts = list(range(n_veh))
        ends = list(range(n_veh, 2 * n_veh))
        self.manager = pywrapcp.RoutingIndexManager(len(self.nodes), n_veh, starts, ends)
        self.routing = routing = pywrapcp.RoutingModel(self.manager)
        locs = np.array([nd.location for nd in self.nodes], dtype=np.intp)
        svc = [nd.service_s for nd in self.nodes]
        used = sorted(set(locs.tolist()))  # a region uses a few rows of the day's matrix
        dur = np.zeros((len(p.duration_s),) * 2, dtype=np.int64)
        dist = np.zeros_like(dur)
        dur[used] = [p.duration_s[a] for a in used]
        dist[used] = [p.distance_m[a] for a in used]
        dur, dist = dur[np.ix_(locs, locs)], dist[np.ix_(locs, locs)]
        time_m = dur + np.array(svc, dtype=np.int64)[:, None]
        np.fill_diagonal(time_m, 0)
        time_cb = routing.RegisterTransitMatrix(time_m.tolist())
        cost_m = w.travel_s * dur + w.distance_m * dist
        routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(cost_m.tolist()))
        self.latest_end_s = self._latest_ends(dur, svc)
        horizon = max([*self.latest_end_s, 0])
        routing.AddDimension(time_cb, horizon, horizon, False, "time")
        self.time = tdim = routing.GetDimensionOrDie("time")
        self._technicians(tdim, svc)
        self._jobs(tdim)
        self._capacity()
        self._disruption()
        self._locks(tdim)

    def _latest_ends(self, dur: np.ndarray, svc: list[int]) -> list[int]:
        """Each technician's latest return: shift end plus allowed overtime, or later when the job
        under way (pinned, first on the route) cannot finish before that; the overrun is overtime."""
        latest = [t.shift_end_s + t.max_overtime_s for t in self.p.technicians]
        for opts in self.job_nodes.values():
            job = self.nodes[opts[0]].job
            if job is None or job.pinned_technician is None:
                continue
            v = self.v_of[job.pinned_technician]
            t = self.p.technicians[v]
            n, start, end = opts[0], v, len(self.p.technicians) + v  # node numbers (see __init__)
            meal = t.meal_break.duration_s if t.meal_break is not None else 0
            finish = t.shift_start_s + int(dur[start][n]) + svc[n] + int(dur[n][end]) + meal
            latest[v] = max(latest[v], finish)
        return latest

    def _technicians(self, tdim: pywrapcp.RoutingDimension, svc: list[int]) -> None:
        routing, solver = self.routing, self.routing.solver()
        visit = [svc[self.manager.IndexToNode(i)] for i in range(self.manager.GetNumberOfIndices())]
        for v, t in enumerate(self.p.technicians):
            start, end = routing.Start(v), routing.End(v)
            tdim.CumulVar(start).SetRange(t.shift_start_s, t.shift_end_s)
            tdim.CumulVar(end).SetRange(t.shift_start_s, self.latest_end_s[v])
            if self.latest_end_s[v] > t.shift_end_s:
                tdim.SetCumulVarSoftUpperBound(end, t.shift_end_s, self.w.overtime_per_s)
            routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(start))
            routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(end))
            b = t.meal_break
            if b is not None:
                interval = solver.FixedDurationIntervalVar(
                    b.earliest_s, b.latest_end_s - b.duration_s, b.duration_s, False,
                    f"break {t.id}")
                tdim.SetBreakIntervalsOfVehicle([interval], v, visit)
                self.breaks[v] = interval

    def _jobs(self, tdim: pywrapcp.RoutingDimension) -> None:
        routing, solver, w = self.routing, self.routing.solver(), self.w
        for opts in self.job_nodes.values():
            job = self.nodes[opts[0]].job
            assert job is not None
            lo, hi, gaps = _window_range(job)
            forced = job.pinned_technician is not None or job.assigned_technician is not None
            penalty = w.override_dropped if forced else w.drop(job.priority)
            idxs = [self.manager.NodeToIndex(n) for n in opts]
            routing.AddDisjunction(idxs, penalty, 1)
            for n, idx in zip(opts, idxs, strict=True):
                self._allow(n, idx)
                cumul = tdim.CumulVar(idx)
                cumul.SetRange(max(lo, 0), hi)
                for a, b in gaps:
                    cumul.RemoveInterval(a, b)
                if job.response_due_s is not None:
                    tdim.SetCumulVarSoftUpperBound(idx, max(0, job.response_due_s),
                                                   w.lateness(job.priority))
                pk = self.pickup_of.get(n)
                if pk is not None:
                    pidx = self.manager.NodeToIndex(pk)
                    self._allow(pk, pidx)
                    routing.AddDisjunction([pidx], 0)
                    routing.AddPickupAndDelivery(pidx, idx)
                    solver.Add(routing.ActiveVar(pidx) == routing.ActiveVar(idx))
                    solver.Add(routing.VehicleVar(pidx) == routing.VehicleVar(idx))
                    solver.Add(tdim.CumulVar(pidx) <= tdim.CumulVar(idx))

    def _allow(self, node: int, idx: int) -> None:
        # SetAllowedVehiclesForIndex's Python binding rejects lists in OR-Tools 9.15
        if len(self.allowed[node]) < len(self.p.technicians):
            self.routing.VehicleVar(idx).SetValues([-1, *self.allowed[node]])

    def _capacity(self) -> None:
        if all(t.capacity is None for t in self.p.technicians):
            return
        demand = [nd.job.demand if nd.kind == "job" and nd.job else 0 for nd in self.nodes]
        cb = self.routing.RegisterUnaryTransitVector(demand)
        caps = [t.capacity if t.capacity is not None else BIG for t in self.p.technicians]
        self.routing.AddDimensionWithVehicleCapacity(cb, 0, caps, True, "load")

    def _disruption(self) -> None:
        if not any(j.current_technician is not None for j in self.p.jobs):
            return
        cbs = []
        for t in self.p.technicians:
            vec = [self.w.disruption if nd.kind == "job" and nd.job and nd.job.current_technician
                   not in (None, t.id) else 0 for nd in self.nodes]
            cbs.append(self.routing.RegisterUnaryTransitVector(vec))
        self.routing.AddDimensionWithVehicleTransits(cbs, 0, BIG, True, "disruption")
        self.routing.GetDimensionOrDie("disruption").SetSpanCostCoefficientForAllVehicles(1)

    def _locks(self, tdim: pywrapcp.RoutingDimension) -> None:
        routing, solver = self.routing, self.routing.solver()
        ordered: dict[int, list[tuple[int, int]]] = {}
        for job_id, opts in self.job_nodes.items():
            job = self.nodes[opts[0]].job
            assert job is not None
            idxs = [self.manager.NodeToIndex(n) for n in opts]
            lo, hi, _ = _window_range(job)
            if job.locked_start_s is not None and max(lo, 0) <= job.locked_start_s <= hi:
                for idx in idxs:
                    tdim.CumulVar(idx).SetRange(job.locked_start_s, job.locked_start_s)
            if job.pinned_technician is not None:
                v = self.v_of[job.pinned_technician]
                routing.NextVar(routing.Start(v)).SetValues(idxs + [routing.End(v)])
                solver.Add(solver.Max([routing.ActiveVar(i) for i in idxs]) == 1)
            elif job.assigned_technician is not None and job.locked_position is not None:
                ordered.setdefault(self.v_of[job.assigned_technician], []).append(
                    (job.locked_position, job_id))
        for v, items in ordered.items():
            chain = [self.job_nodes[j] for _, j in sorted(items)]
            pinned_first = any(
                j.pinned_technician == self.p.technicians[v].id for j in self.p.jobs
                if j.id in self.job_nodes)
            if not pinned_first and sorted(items)[0][0] == 0:
                first = [self.manager.NodeToIndex(n) for n in chain[0]]
                routing.NextVar(routing.Start(v)).SetValues(first + [routing.End(v)])
            for a, b in zip(chain, chain[1:], strict=False):
                ta, act_a = self._start_of(a)
                tb, act_b = self._start_of(b)
                # only binding when both are served: a finishes before b starts
                solver.Add(ta + act_a * self.nodes[a[0]].service_s <= tb + BIG * (1 - act_b))

    def _start_of(self, nodes: list[int]) -> tuple[object, object]:
        """(start time, served 0/1) of a job given its alternative nodes."""
        routing, solver = self.routing, self.routing.solver()
        idxs = [self.manager.NodeToIndex(n) for n in nodes]
        start = solver.Sum([self.time.CumulVar(i) * routing.ActiveVar(i) for i in idxs])
        return start, solver.Sum([routing.ActiveVar(i) for i in idxs])

    # ---- solving --------------------------------------------------------------------------
    def search_parameters(self) -> object:
        sp = pywrapcp.DefaultRoutingSearchParameters()
        sp.first_solution_strategy = getattr(
            routing_enums_pb2.FirstSolutionStrategy, self.params.first_solution)
        sp.local_search_metaheuristic = getattr(
            routing_enums_pb2.LocalSearchMetaheuristic, self.params.metaheuristic)
        sp.time_limit.FromMilliseconds(max(1, int(self.params.time_limit_s * 1000)))
        if self.params.initial_routes:  # the same limit bounds restoring the warm start's breaks
            sp.lns_time_limit.FromMilliseconds(max(100, int(self.params.time_limit_s * 1000)))
        ops = sp.local_search_operators
        for name in ("use_extended_swap_active", "use_relocate_and_make_active",
                     "use_exchange_and_make_active"):
            setattr(ops, name, optional_boolean_pb2.BOOL_TRUE)  # let new urgent jobs displace others
        if self.params.solution_limit:
            sp.solution_limit = self.params.solution_limit
        sp.log_search = self.params.log_search
        return sp

    def _warm_routes(self) -> dict[int, list[int]]:
        """The previous plan's job order per technician, adjusted to today's pins and locks."""
        prev = self.params.initial_routes or {}
        owner = {j.id: (j.pinned_technician or j.assigned_technician) for j in self.p.jobs}
        routes: dict[int, list[int]] = {}
        for t in self.p.technicians:
            keep = [j for j in prev.get(t.id, ()) if owner.get(abs(j), t.id) in (None, t.id)]
            locked = sorted((j for j in self.p.jobs if j.assigned_technician == t.id
                             and j.locked_position is not None and j.pinned_technician is None),
                            key=lambda j: j.locked_position)
            first = [j.id for j in self.p.jobs if j.pinned_technician == t.id][:1]
            fixed = first + [j.id for j in locked]
            routes[t.id] = fixed + [j for j in keep if abs(j) not in fixed]
        return routes

    def _warm_indexes(self, v: int, entries: list[int]) -> list[int]:
        """Routing indexes for a warm-start route; ``-j`` is the part pickup for job ``j``."""
        picked = {-e for e in entries if e < 0}
        route: list[int] = []
        pending: dict[int, int] = {}
        for e in entries:
            job_id = abs(e)
            opts = [n for n in self.job_nodes.get(job_id, []) if v in self.allowed[n]]
            if e < 0 or not opts:
                if e < 0 and any(n in self.pickup_of for n in opts):
                    node = next(n for n in opts if n in self.pickup_of)
                    pending[job_id] = node
                    route.append(self.manager.NodeToIndex(self.pickup_of[node]))
                continue
            node = pending.pop(job_id, None)
            if node is None:
                node = next((n for n in opts if n not in self.pickup_of), opts[0])
                if node in self.pickup_of and job_id not in picked:
                    route.append(self.manager.NodeToIndex(self.pickup_of[node]))
            route.append(self.manager.NodeToIndex(node))
        return route

    def initial_assignment(self) -> object | None:
        if not self.params.initial_routes:
            return None
        routes = []
        for t, entries in zip(self.p.technicians, self._warm_routes().values(), strict=True):
            routes.append(self._warm_indexes(self.v_of[t.id], entries))
        self.routing.CloseModelWithParameters(self.search_parameters())
        self._insert_urgent(routes)
        assignment = self.routing.ReadAssignmentFromRoutes(routes, True)
        if assignment is None:  # first shorten only routes carrying pinned or locked jobs
            fixed = {t for j in self.p.jobs for t in (j.pinned_technician, j.assigned_technician)}
            routes = [self._repair(v, r) if t.id in fixed else r
                      for v, (t, r) in enumerate(zip(self.p.technicians, routes, strict=True))]
            assignment = self.routing.ReadAssignmentFromRoutes(routes, True)
        if assignment is None:
            routes = [self._repair(v, r) for v, r in enumerate(routes)]
            assignment = self.routing.ReadAssignmentFromRoutes(routes, True)
        if assignment is None:
            log.info("warm start routes are infeasible now; solving from scratch")
        return assignment

    def _insert_urgent(self, routes: list[list[int]], tries: int = 2) -> None:
        """Put critical jobs missing from the warm routes after the nearest stop of a nearby
        qualified technician, shortening that route from its end if needed."""
        planned = {i for r in routes for i in r}
        dur = self.p.duration_s
        fixed = {self.v_of[t]: 0 for t in (j.pinned_technician or j.assigned_technician
                                            for j in self.p.jobs) if t is not None}
        for j in self.p.jobs:
            t = j.pinned_technician or j.assigned_technician
            if t is not None and (j.pinned_technician or j.locked_position is not None):
                fixed[self.v_of[t]] += 1
        urgent = [j for j in self.p.jobs if j.priority == 1 and j.id in self.job_nodes
                  and not any(self.manager.NodeToIndex(n) in planned for n in self.job_nodes[j.id])]
        for job in sorted(urgent, key=lambda j: (j.priority, j.response_due_s or 0, j.id)):
            node = next((n for n in self.job_nodes[job.id] if n not in self.pickup_of), None)
            if node is None:
                continue
            idx = self.manager.NodeToIndex(node)

            def near(stop: int, to: int = job.location) -> int:
                return dur[self.nodes[self.manager.IndexToNode(stop)].location][to]

            vehicles = sorted(self.allowed[node], key=lambda v: min(
                (near(i) for i in routes[v]), default=near(self.routing.Start(v))))
            for v in vehicles[:tries]:
                route = routes[v]
                pos = max(fixed.get(v, 0), min(range(len(route) + 1), key=lambda k: near(
                    route[k - 1]) if k else near(self.routing.Start(v))))
                repaired = self._repair(v, route[:pos] + [idx] + route[pos:])
                if idx in repaired:
                    routes[v] = repaired
                    break

    def _repair(self, v: int, route: list[int]) -> list[int]:
        """Shorten one warm route from its end until it is feasible on its own."""
        pickups = {self.manager.NodeToIndex(p) for p in self.pickup_of.values()}
        empty: list[list[int]] = [[] for _ in self.p.technicians]
        route = list(route)
        while route:
            empty[v] = route
            if self.routing.ReadAssignmentFromRoutes(empty, True) is not None:
                break
            route.pop()
            while route and route[-1] in pickups:
                route.pop()
            kept = set(route)
            route = [i for i in route if i not in pickups or self._job_of_pickup(i) in kept]
        return route

    def _job_of_pickup(self, pidx: int) -> int:
        pnode = self.manager.IndexToNode(pidx)
        return next(self.manager.NodeToIndex(d) for d, p in self.pickup_of.items() if p == pnode)


def solve(problem: Problem, params: Params | None = None) -> Solution:
    """Plan routes for ``problem`` within ``params.time_limit_s``; never raises on infeasibility."""
    params = params or Params()
    if not problem.technicians:  # after shift end, say; OR-Tools aborts the process on zero vehicles
        return _nobody(problem)
    if 0 < params.split_above_jobs < len(problem.jobs) and params.region_jobs > 0:
        return _solve_by_regions(problem, params)
    started = time.monotonic()
    # the improvement search gets its share of the time once the routing solver has a plan
    share = params.search_share
    routing_until = started + params.time_limit_s * (1 - share)
    model = _Model(problem, params)
    model.build()
    sp = model.search_parameters()
    first: list[float] = []
    cut = [bool(share) and params.solution_limit is None]

    def on_solution() -> None:
        now = time.monotonic()
        if not first:
            first.append(now - started)
        if cut[0] and now > routing_until:
            model.routing.solver().FinishCurrentSearch()

    model.routing.AddAtSolutionCallback(on_solution)
    initial = model.initial_assignment()
    # the time limit bounds the whole call: building the model and the warm start count too
    left = params.time_limit_s - (time.monotonic() - started)
    sp.time_limit.FromMilliseconds(max(1, int(1000 * max(left, 0.1 * params.time_limit_s))))
    if params.initial_routes:
        sp.lns_time_limit.CopyFrom(sp.time_limit)
    assignment = None
    if initial is not None:
        initial = model.routing.solver().Assignment(initial)  # a copy the search leaves alone
        assignment = model.routing.SolveFromAssignmentWithParameters(initial, sp)
        if assignment is None:  # restoring breaks on long warm routes can exhaust the limit
            log.warning("search from the warm start failed (routing status %s); keeping the "
                        "warm start", model.routing.status())
            assignment = initial
            first.append(time.monotonic() - started)
    if assignment is None:
        assignment = model.routing.SolveWithParameters(sp)
    if assignment is None:
        raise RuntimeError(f"no plan found within {params.time_limit_s} s "
                           f"(routing status {model.routing.status()})")
    if share:
        cut[0] = False
        assignment = _improve(model, assignment, params, started + params.time_limit_s)
    elapsed = time.monotonic() - started
    return _extract(model, assignment, elapsed, first[0] if first else elapsed)


def _solve_by_regions(problem: Problem, params: Params) -> Solution:
    """Plan a large day region by region: every region's first plan (together, the day's first
    plan), then rounds in which each region is searched from the current plan, the regions
    drawn differently every other round so that jobs can move across their borders."""
    started = time.monotonic()
    qualified, reasons = _qualified(problem)
    sources, part_reasons = allocate(problem, qualified)
    reasons.update(part_reasons)
    parts = regions.split(problem, qualified, sources, params.region_jobs, params.initial_routes)
    whole = replace(params, split_above_jobs=0)
    if len(parts) == 1:
        return solve(problem, whole)

    def left() -> float:
        return params.time_limit_s - (time.monotonic() - started)

    plans = [solve(part, replace(whole, time_limit_s=max(0.1, left() / (len(parts) - i)),
                                 solution_limit=1, initial_routes=_routes_for(part, params)))
             for i, part in enumerate(parts)]
    plan = _merge(problem, plans, reasons, 0.0, time.monotonic() - started)
    log.info("first plan of %d regions in %.1f s", len(parts), plan.first_solution_s)
    k = len(parts)
    for r in range(REGION_ROUNDS):
        if left() < REGION_SEARCH_MIN_S * (k + 1):
            break
        if r:  # every other round one region more, so the borders move
            size = math.ceil(len(problem.jobs) / (k + r % 2))
            parts = regions.split(problem, qualified, sources, size, plan.initial_routes())
        budget = left() / (REGION_ROUNDS - r)
        if budget < REGION_SEARCH_MIN_S * len(parts):  # too short for several rounds: one more
            budget = left()
        at = time.monotonic()
        plans = []
        for i, part in enumerate(parts):
            share = (budget - (time.monotonic() - at)) / (len(parts) - i)
            try:
                plans.append(solve(part, replace(whole, time_limit_s=max(0.1, share),
                                                 initial_routes=_routes_for(part, plan))))
            except RuntimeError:  # out of time: this round is dropped, the plan stands
                log.warning("region search %d of round %d found no plan in time", i, r)
                break
        else:
            better = _merge(problem, plans, reasons, 0.0, plan.first_solution_s)
            if better.objective.cost <= plan.objective.cost:
                plan = better
    return replace(plan, solve_time_s=time.monotonic() - started)


def _routes_for(part: Problem, previous: Params | Solution) -> dict[int, tuple[int, ...]] | None:
    """The previous plan's routes of a region's technicians (warm start), if any."""
    routes = (previous.initial_routes if isinstance(previous, Params)
              else previous.initial_routes()) or {}
    return {t.id: routes[t.id] for t in part.technicians if t.id in routes} or None


def _merge(problem: Problem, plans: list[Solution], reasons: dict[int, str], elapsed: float,
           first_s: float) -> Solution:
    """One day's plan from the plans of its regions; reasons given for the whole day."""
    route_of = {r.technician_id: r for s in plans for r in s.routes}
    dropped = {u.job_id for s in plans for u in s.unassigned}
    unassigned = tuple(Unassigned(j.id, j.priority, reasons.get(j.id) or _why_dropped(problem, j))
                       for j in problem.jobs if j.id in dropped)
    late: dict[int, int] = {}
    by_priority: dict[int, int] = {}
    for s in plans:
        for k, v in s.objective.lateness_s.items():
            late[k] = late.get(k, 0) + v
    for u in unassigned:
        by_priority[u.priority] = by_priority.get(u.priority, 0) + 1
    objective = Objective(
        sum(s.objective.travel_s for s in plans), sum(s.objective.distance_m for s in plans),
        late, sum(s.objective.overtime_s for s in plans), sum(s.objective.disrupted for s in plans),
        by_priority, sum(s.objective.cost for s in plans))
    return Solution(tuple(route_of[t.id] for t in problem.technicians), unassigned, objective,
                    elapsed, first_s)
def _improve(model: _Model, assignment: object, params: Params, deadline: float) -> object:
    """Run the improvement search on the plan; keep its routes only when the routing model
    accepts them and they cost less (a short greedy descent then settles times)."""
    routing, manager = model.routing, model.manager
    routes: dict[int, list[int]] = {}
    indexes: list[list[int]] = []
    for v, t in enumerate(model.p.technicians):
        idx = assignment.Value(routing.NextVar(routing.Start(v)))
        indexes.append([])
        routes[t.id] = []
        while not routing.IsEnd(idx):
            nd = model.nodes[manager.IndexToNode(idx)]
            routes[t.id].append(nd.job.id if nd.kind == "job" else -nd.job.id)
            indexes[v].append(idx)
            idx = assignment.Value(routing.NextVar(idx))
    served = {abs(x) for r in routes.values() for x in r}
    unserved = [j for j, opts in model.job_nodes.items() if j not in served and len(opts) == 1
                and opts[0] not in model.pickup_of]
    settle_s = min(1.0, 0.1 * params.time_limit_s)
    budget_s = deadline - settle_s - time.monotonic()
    iterations = params.search_iterations or (
        REPRODUCIBLE_SEARCH_ITERATIONS if params.solution_limit else None)
    if budget_s <= 0 and iterations is None:
        return assignment
    found = search.improve(model.p, routes, unserved, budget_s, params.seed, iterations)
    if found is None or found.cost >= found.start_cost:
        return assignment
    for t_id, jobs in found.routes.items():
        indexes[model.v_of[t_id]] = [manager.NodeToIndex(model.job_nodes[j][0]) for j in jobs]
    candidate = routing.ReadAssignmentFromRoutes(indexes, True)
    if candidate is None:
        log.warning("improved routes rejected by the routing model; keeping the solver's plan")
        return assignment
    sp = model.search_parameters()
    sp.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GREEDY_DESCENT
    sp.time_limit.FromMilliseconds(max(100, int(1000 * (deadline - time.monotonic()))))
    settled = routing.SolveFromAssignmentWithParameters(candidate, sp)
    if settled is None or settled.ObjectiveValue() > assignment.ObjectiveValue():
        return assignment
    return settled


def _nobody(problem: Problem) -> Solution:
    """Every job unassigned because no technician is available."""
    unassigned = tuple(Unassigned(j.id, j.priority, "no technician on shift") for j in problem.jobs)
    counts = {pr: sum(u.priority == pr for u in unassigned) for pr in {u.priority for u in unassigned}}
    return Solution((), unassigned, Objective(0, 0, {}, 0, 0, counts, 0), 0.0)


def _extract(model: _Model, assignment: object, elapsed: float, first_s: float) -> Solution:
    p, routing, manager, tdim = model.p, model.routing, model.manager, model.time
    dur, dist = p.duration_s, p.distance_m
    routes: list[Route] = []
    served: set[int] = set()
    late: dict[int, int] = {}
    overtime = disrupted = 0
    for v, t in enumerate(p.technicians):
        idx = routing.Start(v)
        prev_loc, prev_dep = t.start, assignment.Value(tdim.CumulVar(idx))
        start_s = prev_dep
        stops: list[Stop] = []
        total_t = total_d = 0
        idx = assignment.Value(routing.NextVar(idx))
        while not routing.IsEnd(idx):
            nd = model.nodes[manager.IndexToNode(idx)]
            assert nd.job is not None
            travel, metres = dur[prev_loc][nd.location], dist[prev_loc][nd.location]
            begin = assignment.Value(tdim.CumulVar(idx))
            stops.append(Stop(nd.kind, nd.job.id, nd.location, prev_dep + travel, begin,
                              begin + nd.service_s, travel, metres, nd.warehouse, nd.parts_from))
            total_t += travel
            total_d += metres
            if nd.kind == "job":
                served.add(nd.job.id)
                if nd.job.response_due_s is not None and begin > nd.job.response_due_s:
                    late[nd.job.priority] = late.get(nd.job.priority, 0) + begin - nd.job.response_due_s
                if nd.job.current_technician not in (None, t.id):
                    disrupted += 1
            prev_loc, prev_dep = nd.location, begin + nd.service_s
            idx = assignment.Value(routing.NextVar(idx))
        end_s = assignment.Value(tdim.CumulVar(idx))
        total_t += dur[prev_loc][t.end]
        total_d += dist[prev_loc][t.end]
        overtime += max(0, end_s - t.shift_end_s)
        routes.append(Route(t.id, tuple(stops), start_s, end_s, total_t, total_d,
                            _break_start(model, assignment, v)))
    unassigned = []
    for job in p.jobs:
        if job.id not in served:
            reason = model.reasons.get(job.id) or _why_dropped(model.p, job)
            unassigned.append(Unassigned(job.id, job.priority, reason))
    dropped: dict[int, int] = {}
    for u in unassigned:
        dropped[u.priority] = dropped.get(u.priority, 0) + 1
    objective = Objective(sum(r.travel_s for r in routes), sum(r.distance_m for r in routes), late,
                          overtime, disrupted, dropped, assignment.ObjectiveValue())
    return Solution(tuple(routes), tuple(unassigned), objective, elapsed, first_s)


def _break_start(model: _Model, assignment: object, v: int) -> int | None:
    interval = model.breaks.get(v)
    return None if interval is None else assignment.StartValue(interval)


def _why_dropped(p: Problem, job: Job) -> str:
    """Explain, in a dispatcher's words, why a job that could be planned was left out."""
    lo, hi, _ = _window_range(job)
    techs = [t for t in p.technicians if t.has_skills(job.skills)]
    reachable = []
    for t in techs:
        arrive = max(t.shift_start_s + p.duration_s[t.start][job.location], lo)
        back = arrive + job.duration_s + p.duration_s[job.location][t.end]
        if arrive <= hi and back <= t.shift_end_s + t.max_overtime_s:
            reachable.append(t)
    if not reachable:
        return "no time in any qualified technician's shift to reach the site within its window"
    if job.response_due_s is not None:
        return ("no time in any shift before the deadline: qualified technicians' days are "
                "full with more important work")
    return "qualified technicians' days are full with more important work"
