"""Tiny named dispatch instances on a line: location k is k km east of the depot (1 min/km)."""

from __future__ import annotations

from dataclasses import replace

from dispatch.problem import Break, Job, Problem, Technician, Warehouse
from dispatch.solver import Params
from fieldops.domain import PartQuantity

HOUR = 3600
FAST = Params(time_limit_s=1.0, seed=1)
N_LOCATIONS = 12


def line_matrices(n: int = N_LOCATIONS) -> tuple[tuple[tuple[int, ...], ...], ...]:
    dur = tuple(tuple(60 * abs(a - b) for b in range(n)) for a in range(n))
    dist = tuple(tuple(1000 * abs(a - b) for b in range(n)) for a in range(n))
    return dur, dist


def tech(id: int, skills: str = "hvac", **kw) -> Technician:
    base = Technician(id=id, start=0, end=0, shift_start_s=8 * HOUR, shift_end_s=17 * HOUR,
                      skills=frozenset(skills.split()) if skills else frozenset(), name=f"tech{id}")
    return replace(base, **kw)


def job(id: int, location: int, **kw) -> Job:
    return replace(Job(id=id, location=location, duration_s=HOUR), **kw)


def problem(techs: list[Technician], jobs: list[Job], warehouses: list[Warehouse] = ()) -> Problem:
    dur, dist = line_matrices()
    return Problem(tuple(techs), tuple(jobs), dur, dist, tuple(warehouses))


def parts(*skus: str) -> tuple[PartQuantity, ...]:
    return tuple(PartQuantity(s, 1) for s in skus)


LUNCH = Break(earliest_s=12 * HOUR, latest_end_s=13 * HOUR + 1800, duration_s=1800)
