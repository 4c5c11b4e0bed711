"""The dispatch problem and its solution as typed, immutable values (no solver, no I/O).

Times are integer seconds from ``Problem.origin`` (t = 0); locations are indexes into the
problem's travel matrices. ``solve(problem, params)`` in :mod:`dispatch.solver` turns a
``Problem`` into a ``Solution``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from dispatch.weights import DEFAULT_WEIGHTS, Weights
from fieldops.domain import PartQuantity

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    start_s: int
    end_s: int

    def __post_init__(self) -> None:
        if self.end_s < self.start_s:
            raise ValueError(f"window: end_s {self.end_s} before start_s {self.start_s}")


@dataclass(frozen=True, slots=True)
class Break:
    """A meal break of ``duration_s`` taken entirely between ``earliest_s`` and ``latest_end_s``."""

    earliest_s: int
    latest_end_s: int
    duration_s: int

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.earliest_s + self.duration_s > self.latest_end_s:
            raise ValueError("break: duration_s must be positive and fit its window")


@dataclass(frozen=True, slots=True)
class Technician:
    """A technician (or, in benchmarks, a vehicle) with a route from ``start`` to ``end``."""

    id: int
    start: int
    end: int
    shift_start_s: int
    shift_end_s: int
    skills: frozenset[str] = frozenset()
    van_stock: tuple[PartQuantity, ...] = ()
    meal_break: Break | None = None
    max_overtime_s: int = 0
    capacity: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.shift_end_s < self.shift_start_s:
            raise ValueError(f"technician {self.id}: shift_end_s before shift_start_s")
        if self.max_overtime_s < 0:
            raise ValueError(f"technician {self.id}: max_overtime_s must not be negative")

    def has_skills(self, skills: frozenset[str]) -> bool:
        return skills <= self.skills


@dataclass(frozen=True, slots=True)
class Job:
    """One job to plan.

    ``pinned_technician``: en route or on site; stays first on that technician's route.
    ``assigned_technician``: a dispatcher's override; ``locked_position`` (0-based order among
    the technician's locked jobs) and ``locked_start_s`` fix order or time as well.
    ``current_technician``: already dispatched there; moving it costs a disruption penalty.
    """

    id: int
    location: int
    duration_s: int
    priority: int = 3
    windows: tuple[Window, ...] = ()
    skills: frozenset[str] = frozenset()
    parts: tuple[PartQuantity, ...] = ()
    response_due_s: int | None = None
    demand: int = 0
    pinned_technician: int | None = None
    assigned_technician: int | None = None
    locked_position: int | None = None
    locked_start_s: int | None = None
    current_technician: int | None = None

    def __post_init__(self) -> None:
        if self.duration_s < 0:
            raise ValueError(f"job {self.id}: duration_s must not be negative")
        if not 1 <= self.priority <= 4:
            raise ValueError(f"job {self.id}: priority must be 1 (critical) to 4 (low)")
        if self.demand < 0:
            raise ValueError(f"job {self.id}: demand must not be negative")


@dataclass(frozen=True, slots=True)
class Warehouse:
    id: int
    location: int
    stock: tuple[PartQuantity, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """Technicians, jobs, warehouses and the travel matrices between their locations."""

    technicians: tuple[Technician, ...]
    jobs: tuple[Job, ...]
    duration_s: tuple[tuple[int, ...], ...]
    distance_m: tuple[tuple[int, ...], ...]
    warehouses: tuple[Warehouse, ...] = ()
    weights: Weights = DEFAULT_WEIGHTS
    pickup_duration_s: int = 600
    origin: datetime = EPOCH

    def __post_init__(self) -> None:
        n = len(self.duration_s)
        if len(self.distance_m) != n or any(
            len(r) != n for r in (*self.duration_s, *self.distance_m)
        ):
            raise ValueError("duration_s and distance_m must be square matrices of equal size")
        for kind, items in (("technician", self.technicians), ("job", self.jobs),
                            ("warehouse", self.warehouses)):
            ids = [x.id for x in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind} ids must be unique")
        locations = [j.location for j in self.jobs] + [w.location for w in self.warehouses]
        locations += [x for t in self.technicians for x in (t.start, t.end)]
        bad = [x for x in locations if not 0 <= x < n]
        if bad:
            raise ValueError(f"location index {bad[0]} outside the {n}-location matrix")
        tech_ids = {t.id for t in self.technicians}
        for j in self.jobs:
            for name in ("pinned_technician", "assigned_technician", "current_technician"):
                value = getattr(j, name)
                if value is not None and value not in tech_ids:
                    raise ValueError(f"job {j.id}: {name} {value} is not a technician")

    def technician(self, technician_id: int) -> Technician:
        return next(t for t in self.technicians if t.id == technician_id)

    def job(self, job_id: int) -> Job:
        return next(j for j in self.jobs if j.id == job_id)


REPRODUCIBLE_SEARCH_ITERATIONS = 2000


@dataclass(frozen=True, slots=True)
class Params:
    """Solver parameters.

    ``initial_routes`` (technician id -> job ids in order, ``-j`` for the part pickup of job j,
    as ``Solution.initial_routes()`` returns them) warm-starts the search. ``seed`` permutes
    the node numbering (OR-Tools' tie-breaking); with the same seed, the same problem and a
    search that ends by convergence or ``solution_limit`` rather than the clock, the plan is the
    same. ``search_share`` of the time limit goes to the improvement search after the routing
    solver (:mod:`dispatch.search`; 0 turns it off); ``search_iterations`` makes it run that
    many iterations instead, whatever the clock, so that it depends only on the problem and the
    seed (with ``solution_limit`` set and no ``search_iterations``, it runs
    ``REPRODUCIBLE_SEARCH_ITERATIONS``). A day of more than ``split_above_jobs`` jobs (0: never)
    is planned in regions of about ``region_jobs`` jobs (:mod:`dispatch.regions`); how many
    rounds of regional search fit in the time limit depends on the clock, so such a plan is
    reproducible only up to that.
    """

    time_limit_s: float = 5.0
    seed: int = 0
    first_solution: str = "PARALLEL_CHEAPEST_INSERTION"
    metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    initial_routes: Mapping[int, tuple[int, ...]] | None = None
    solution_limit: int | None = None
    log_search: bool = False
    split_above_jobs: int = 250
    region_jobs: int = 100
    search_share: float = 0.85
    search_iterations: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """One stop: a job (``job_id``) or a part pickup at ``warehouse_id`` for ``job_id``.

    ``arrival_s`` is when the technician gets there, ``start_s`` when work starts (the ETA
    given to the customer), ``departure_s`` when the technician leaves.
    """

    kind: str
    job_id: int
    location: int
    arrival_s: int
    start_s: int
    departure_s: int
    travel_s: int
    distance_m: int
    warehouse_id: int | None = None
    parts_from: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    technician_id: int
    stops: tuple[Stop, ...]
    start_s: int
    end_s: int
    travel_s: int
    distance_m: int
    break_start_s: int | None = None

    def job_ids(self) -> tuple[int, ...]:
        return tuple(s.job_id for s in self.stops if s.kind == "job")


@dataclass(frozen=True, slots=True)
class Unassigned:
    job_id: int
    priority: int
    reason: str


@dataclass(frozen=True, slots=True)
class Objective:
    """The parts of the objective, in natural units, and the solver's total cost."""

    travel_s: int
    distance_m: int
    lateness_s: Mapping[int, int]
    overtime_s: int
    disrupted: int
    unassigned: Mapping[int, int]
    cost: int


@dataclass(frozen=True, slots=True)
class Solution:
    routes: tuple[Route, ...]
    unassigned: tuple[Unassigned, ...]
    objective: Objective
    solve_time_s: float
    first_solution_s: float = 0.0

    def route(self, technician_id: int) -> Route:
        return next(r for r in self.routes if r.technician_id == technician_id)

    def technician_of(self, job_id: int) -> int | None:
        return next((r.technician_id for r in self.routes if job_id in r.job_ids()), None)

    def stop(self, job_id: int) -> Stop | None:
        for r in self.routes:
            for s in r.stops:
                if s.kind == "job" and s.job_id == job_id:
                    return s
        return None

    def reason(self, job_id: int) -> str | None:
        return next((u.reason for u in self.unassigned if u.job_id == job_id), None)

    def initial_routes(self) -> dict[int, tuple[int, ...]]:
        """This plan as a warm start for the next ``solve`` (``-j``: the part pickup for job j)."""
        return {r.technician_id: tuple(s.job_id if s.kind == "job" else -s.job_id for s in r.stops)
                for r in self.routes}
