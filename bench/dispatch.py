"""Dispatch bench on a generated field-service day.

``python -m bench.dispatch [--jobs 1000] [--technicians 100] [--time-limit 60] [--seed 1]
[--split-above-jobs 250] [--region-jobs 100]`` prints one JSON line: time to the first feasible plan and the final
plan's objective parts for the large day (and the CPU time of its solve: the machine may be
shared), then re-plan latencies after one dispatcher override and after one urgent job
on a 200-job / 20-technician day.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace

from dispatch.problem import Break, Job, Params, Problem, Solution, Technician, Warehouse, Window
from dispatch.solver import solve
from dispatch.travel import GeodesicProvider
from fieldops.domain import GeoPoint, PartQuantity

HOUR = 3600
SKILLS = ("hvac", "electrical", "plumbing", "gas", "refrigeration")
SKUS = tuple(f"P{i:02d}" for i in range(20))
CENTRE = (52.52, 13.40)  # a metropolitan area about 20 by 20 km


def _point(rng: random.Random, spread: float = 0.15) -> GeoPoint:
    return GeoPoint(CENTRE[0] + rng.uniform(-spread, spread) * 0.6,
                    CENTRE[1] + rng.uniform(-spread, spread))


def generate_day(jobs: int, technicians: int, seed: int) -> Problem:
    """A realistic day: skills, customer windows, parts, priorities and deadlines, lunch breaks."""
    rng = random.Random(seed)
    n_wh = max(1, technicians // 30)
    points = [_point(rng) for _ in range(jobs + technicians + n_wh)]
    dur, dist = GeodesicProvider().matrices(points)
    techs = []
    for i in range(technicians):
        loc = jobs + i
        techs.append(Technician(
            id=i + 1, start=loc, end=loc, shift_start_s=8 * HOUR, shift_end_s=17 * HOUR,
            skills=frozenset(rng.sample(SKILLS, rng.choice((2, 3, 3, 4)))),
            van_stock=tuple(PartQuantity(s, 1) for s in rng.sample(SKUS, 4)),
            meal_break=Break(12 * HOUR, 14 * HOUR, 1800), max_overtime_s=HOUR))
    job_list = []
    for j in range(jobs):
        prio = rng.choices((1, 2, 3, 4), weights=(5, 15, 50, 30))[0]
        windows: tuple[Window, ...] = ()
        if rng.random() < 0.3:
            start = rng.choice((8, 10, 12, 14)) * HOUR
            windows = (Window(start, start + rng.choice((2, 3, 4)) * HOUR),)
        due = {1: 8 * HOUR + rng.randint(2, 4) * HOUR, 2: 16 * HOUR}.get(prio)
        parts = (PartQuantity(rng.choice(SKUS), 1),) if rng.random() < 0.2 else ()
        skills = frozenset(rng.sample(SKILLS, 2 if rng.random() < 0.1 else 1))
        job_list.append(Job(id=j + 1, location=j, duration_s=rng.choice((30, 45, 60, 90)) * 60,
                            priority=prio, windows=windows, skills=skills, parts=parts,
                            response_due_s=due))
    warehouses = tuple(
        Warehouse(id=w + 1, location=jobs + technicians + w,
                  stock=tuple(PartQuantity(s, rng.randint(3, 12)) for s in SKUS))
        for w in range(n_wh))
    return Problem(tuple(techs), tuple(job_list), dur, dist, warehouses)


def objective_parts(s: Solution) -> dict:
    return {"travel_km": round(s.objective.distance_m / 1000, 1),
            "travel_h": round(s.objective.travel_s / 3600, 1),
            "lateness_min_by_priority": {k: round(v / 60) for k, v in sorted(s.objective.lateness_s.items())},
            "overtime_min": round(s.objective.overtime_s / 60),
            "unassigned_by_priority": dict(sorted(s.objective.unassigned.items())),
            "served": sum(len(r.job_ids()) for r in s.routes), "cost": s.objective.cost}


def _timed(problem: Problem, params: Params) -> tuple[Solution, float]:
    started = time.monotonic()
    solution = solve(problem, params)
    return solution, round(time.monotonic() - started, 2)


def replan_figures(seed: int, replan_limit: float) -> dict:
    """Re-plan latency after one override and after one urgent job, on 200 jobs / 20 technicians."""
    day = generate_day(200, 20, seed + 1)
    base, _ = _timed(day, Params(time_limit_s=10.0, seed=seed))
    current = {j: r.technician_id for r in base.routes for j in r.job_ids()}
    dispatched = replace(day, jobs=tuple(replace(j, current_technician=current.get(j.id))
                                         for j in day.jobs))
    warm = Params(time_limit_s=replan_limit, seed=seed, initial_routes=base.initial_routes())
    # override: a served job moves to another qualified technician, locked first on the route
    job = next(j for j in dispatched.jobs if j.id in current and not j.parts)
    target = next(t for t in day.technicians if t.id != current[job.id] and t.has_skills(job.skills))
    overridden = replace(dispatched, jobs=tuple(
        replace(j, assigned_technician=target.id, locked_position=0) if j.id == job.id else j
        for j in dispatched.jobs))
    after_override, t_override = _timed(overridden, warm)
    honoured = (after_override.technician_of(job.id) == target.id
                and after_override.route(target.id).job_ids()[0] == job.id)
    # urgent job: a new P1 at an existing site, due within two hours of the shift start
    urgent = Job(id=10_000, location=day.jobs[0].location, duration_s=HOUR, priority=1,
                 skills=frozenset({SKILLS[0]}), response_due_s=10 * HOUR)
    with_urgent = replace(overridden, jobs=(*overridden.jobs, urgent))
    after_urgent, t_urgent = _timed(with_urgent, warm)
    moved = sum(1 for j, t in current.items() if after_urgent.technician_of(j) not in (t, None)
                and j != job.id)
    return {"replan_time_limit_s": replan_limit,
            "override_replan_s": t_override, "override_first_feasible_s": round(after_override.first_solution_s, 2),
            "override_honoured": honoured,
            "urgent_replan_s": t_urgent,
            "urgent_first_feasible_s": round(after_urgent.first_solution_s, 2), "urgent_assigned": after_urgent.technician_of(10_000) is not None,
            "urgent_jobs_moved": moved}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--technicians", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=60.0, help="final plan search, seconds")
    ap.add_argument("--replan-limit", type=float, default=1.5, help="re-plan search, seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--split-above-jobs", type=int, default=Params().split_above_jobs,
                    help="plan a day of more jobs than this region by region (0: never)")
    ap.add_argument("--region-jobs", type=int, default=Params().region_jobs,
                    help="jobs per region of a split day")
    args = ap.parse_args(argv)
    started = time.monotonic()
    day = generate_day(args.jobs, args.technicians, args.seed)
    matrix_s = round(time.monotonic() - started, 2)
    cpu = time.process_time()
    final, t_final = _timed(day, Params(time_limit_s=args.time_limit, seed=args.seed,
                                        region_jobs=args.region_jobs,
                                        split_above_jobs=args.split_above_jobs))
    line = {"jobs": args.jobs, "technicians": args.technicians, "matrix_s": matrix_s,
            "split_above_jobs": args.split_above_jobs, "region_jobs": args.region_jobs,
            "first_feasible_s": round(final.first_solution_s, 2), "final_s": t_final,
            "final_cpu_s": round(time.process_time() - cpu, 2), "final": objective_parts(final)}
    line.update(replan_figures(args.seed, args.replan_limit))
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
