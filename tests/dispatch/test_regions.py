"""Splitting a large day into regions: one rule per test, on the line of instances.py."""

from __future__ import annotations

from dataclasses import replace

from dispatch.parts import allocate
from dispatch.problem import Warehouse
from dispatch.regions import split
from dispatch.solver import _qualified, solve
from tests.dispatch.instances import FAST, job, parts, problem, tech

WEST = [tech(1, start=0, end=0), tech(2, start=1, end=1)]
EAST = [tech(3, start=10, end=10), tech(4, start=11, end=11)]
JOBS = [job(i, loc, duration_s=1800) for i, loc in enumerate((1, 2, 3, 4, 7, 8, 9, 10), start=1)]


def _split(p, max_jobs=4, routes=None):
    qualified, _ = _qualified(p)
    sources, _ = allocate(p, qualified)
    return split(p, qualified, sources, max_jobs, routes)


def _region_of(regions, job_id):
    return next(r for r in regions if job_id in {j.id for j in r.jobs})


def test_split_covers_every_job_and_technician_once_by_where_they_are():
    regions = _split(problem(WEST + EAST, JOBS))
    assert len(regions) == 2
    assert sorted(j.id for r in regions for j in r.jobs) == [j.id for j in JOBS]
    assert sorted(t.id for r in regions for t in r.technicians) == [1, 2, 3, 4]
    west = _region_of(regions, 1)
    assert {t.id for t in west.technicians} == {1, 2}
    assert {j.id for j in west.jobs} == {1, 2, 3, 4}


def test_a_small_day_stays_whole():
    p = problem(WEST + EAST, JOBS)
    assert _split(p, max_jobs=len(JOBS)) == [p]


def test_a_fleet_starting_from_one_depot_stays_whole():
    p = problem([tech(i) for i in range(1, 5)], JOBS)
    assert _split(p) == [p]


def test_pinned_assigned_and_planned_jobs_stay_in_their_technicians_region():
    jobs = [replace(JOBS[7], pinned_technician=1), replace(JOBS[6], assigned_technician=2),
            *JOBS[:6]]
    regions = _split(problem(WEST + EAST, jobs), routes={1: (6,)})
    west = {j.id for j in _region_of(regions, 8).jobs}
    assert {7, 8, 6} <= west


def test_stock_is_promised_once_across_regions():
    # job 1 (east) holds the motor in tech 1's van (west) and the one in the store
    jobs = [job(1, 9, parts=parts("MTR-1")), *JOBS[1:4], *JOBS[5:7]]
    techs = [replace(WEST[0], van_stock=parts("MTR-1")), WEST[1], *EAST]
    regions = _split(problem(techs, jobs, [Warehouse(7, 6, parts("MTR-1"))]))
    east, west = _region_of(regions, 1), _region_of(regions, 2)
    assert east is not west
    assert [q.quantity for w in east.warehouses for q in w.stock] == [1]
    assert [q for w in west.warehouses for q in w.stock] == []
    assert west.technician(1).van_stock == ()


def test_a_day_planned_by_region_serves_it_and_explains_drops_for_the_whole_day():
    jobs = [*JOBS, job(9, 5, parts=parts("MTR-1")), job(10, 6, parts=parts("MTR-1"), priority=2)]
    p = problem(WEST + EAST, jobs, [Warehouse(7, 6, parts("MTR-1"))])
    s = solve(p, replace(FAST, split_above_jobs=4, region_jobs=4))
    assert sorted(j for r in s.routes for j in r.job_ids()) == list(range(1, 9)) + [10]
    assert s.reason(9) == "part MTR-1 out of stock everywhere (needs 1, 0 free)"
    assert 0 < s.first_solution_s <= s.solve_time_s


def test_a_day_planned_by_region_honours_overrides_across_borders():
    # job 8 lies east but a dispatcher put it first on tech 1's route (west); job 1 is en route
    jobs = [replace(JOBS[0], pinned_technician=2),
            *JOBS[1:7], replace(JOBS[7], assigned_technician=1, locked_position=0)]
    s = solve(problem(WEST + EAST, jobs), replace(FAST, split_above_jobs=4, region_jobs=4))
    assert s.route(1).job_ids()[0] == 8
    assert s.route(2).job_ids()[0] == 1
