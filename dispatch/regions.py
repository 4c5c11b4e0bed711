"""Splitting a large day into regional sub-problems (no solver here, only problem values).

OR-Tools' insertion heuristics grow much faster than linearly with the day: on the generated
bench day a first plan for 250 jobs / 25 technicians costs about 0.7 s of CPU, for 1,000 jobs /
100 technicians about 25-55 s. :func:`split` cuts the day into regions of about ``max_jobs``
jobs, each with its own technicians, so that each region's plan is cheap to find and to
improve; the union of the regional plans is a plan for the whole day.

Technicians are grouped by where they start (balanced farthest-point seeds refined by a few
medoid steps, on the travel-time matrix); each job goes to the group whose nearest qualified
technician is closest, within a share of jobs proportional to the group's size. A job pinned,
assigned, planned (in a previous plan) or dispatched to a technician goes to that technician's
group; a job whose parts come only from one technician's van goes to that van's group.

Stock stays promised once: the day's parts allocation (:func:`dispatch.parts.allocate`) is made
once for the whole day and each region gets exactly the warehouse units allocated to its jobs,
and vans lose the units allocated to jobs of other regions. Re-running the allocation inside a
region then reproduces the day's allocation for the region's jobs (every other source holds no
more than it held at that job's turn in the day's allocation).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from dispatch.parts import PartSources
from dispatch.problem import Job, Problem, Technician
from fieldops.domain import PartQuantity

MEDOID_ROUNDS = 3
JOB_SLACK = 1.05  # a region may take this much more than its technicians' share of the jobs


def split(problem: Problem, qualified: Mapping[int, Sequence[Technician]],
          sources: Mapping[int, PartSources], max_jobs: int,
          routes: Mapping[int, Sequence[int]] | None = None) -> list[Problem]:
    """Regional sub-problems covering every job and technician once, or ``[problem]`` when the
    day is small enough or its technicians do not start from enough distinct places.

    ``routes`` (a previous plan, technician id -> job ids) keeps each planned job in its
    technician's region.
    """
    regions = math.ceil(len(problem.jobs) / max_jobs) if max_jobs > 0 else 1
    starts = {t.start for t in problem.technicians}
    if regions <= 1 or len(starts) < 2 * regions:
        return [problem]
    groups = _technician_groups(problem, regions)
    group_of = {t.id: g for g, members in enumerate(groups) for t in members}
    planned = {abs(j): t for t, route in (routes or {}).items() if t in group_of for j in route}
    jobs = _assign_jobs(problem, qualified, sources, groups, group_of, planned)
    return [_region(problem, groups[g], jobs[g], sources) for g in range(regions) if groups[g]]


def _distance(problem: Problem, a: int, b: int) -> int:
    return problem.duration_s[a][b] + problem.duration_s[b][a]


def _technician_groups(problem: Problem, k: int) -> list[list[Technician]]:
    techs = sorted(problem.technicians, key=lambda t: t.id)
    d = [[_distance(problem, a.start, b.start) for b in techs] for a in techs]
    # farthest-point seeds, starting from the most outlying technician
    seeds = [max(range(len(techs)), key=lambda i: (sum(d[i]), -i))]
    while len(seeds) < k:
        seeds.append(max((i for i in range(len(techs)) if i not in seeds),
                         key=lambda i: (min(d[i][s] for s in seeds), -i)))
    members = _balanced(d, seeds, len(techs))
    for _ in range(MEDOID_ROUNDS):
        medoids = [min(m, key=lambda i, m=m: (sum(d[i][j] for j in m), i)) for m in members]
        if medoids == seeds:
            break
        seeds = medoids
        members = _balanced(d, seeds, len(techs))
    return [[techs[i] for i in m] for m in members]


def _balanced(d: list[list[int]], seeds: list[int], n: int) -> list[list[int]]:
    """Each technician to its nearest seed with room (ceil(n / k) each), most decided first."""
    room = [math.ceil(n / len(seeds))] * len(seeds)
    members: list[list[int]] = [[] for _ in seeds]

    def regret(i: int) -> tuple[int, int]:
        near = sorted(d[i][s] for s in seeds)
        return (-(near[1] - near[0]) if len(near) > 1 else 0, i)

    for i in sorted(range(n), key=regret):
        g = min((g for g in range(len(seeds)) if room[g]), key=lambda g: (d[i][seeds[g]], g))
        members[g].append(i)
        room[g] -= 1
    return members


def _assign_jobs(problem: Problem, qualified: Mapping[int, Sequence[Technician]],
                 sources: Mapping[int, PartSources], groups: list[list[Technician]],
                 group_of: dict[int, int], planned: dict[int, int]) -> list[list[Job]]:
    dur = problem.duration_s
    n_techs = len(problem.technicians)
    room = [math.ceil(len(problem.jobs) * len(g) / n_techs * JOB_SLACK) for g in groups]
    jobs: list[list[Job]] = [[] for _ in groups]
    free: list[tuple[Job, list[tuple[int, int]]]] = []
    for job in problem.jobs:
        fixed = next((t for t in (job.pinned_technician, job.assigned_technician,
                                   planned.get(job.id), job.current_technician)
                      if t is not None), None)
        src = sources.get(job.id)
        if fixed is None and src is not None and src.warehouse is None:
            fixed = src.van_technician
        if fixed is not None:
            g = group_of[fixed]
            jobs[g].append(job)
            room[g] -= 1
            continue
        techs = qualified.get(job.id) or problem.technicians
        near: dict[int, int] = {}
        for t in techs:
            g = group_of[t.id]
            near[g] = min(near.get(g, 2**62), dur[t.start][job.location])
        free.append((job, sorted((v, g) for g, v in near.items())))

    def regret(item: tuple[Job, list[tuple[int, int]]]) -> tuple[int, int]:
        job, ranked = item
        return (-(ranked[1][0] - ranked[0][0]) if len(ranked) > 1 else -2**62, job.id)

    for job, ranked in sorted(free, key=regret):
        g = next((g for _, g in ranked if room[g] > 0), ranked[0][1])
        jobs[g].append(job)
        room[g] -= 1
    return jobs


def _region(problem: Problem, techs: list[Technician], jobs: list[Job],
            sources: Mapping[int, PartSources]) -> Problem:
    """The sub-problem of one group, holding only the stock allocated to its jobs."""
    elsewhere: dict[int, Counter[str]] = {}  # van technician -> units held for other regions
    stores: dict[int, Counter[str]] = {}
    region_jobs = {j.id for j in jobs}
    for job in problem.jobs:
        src = sources.get(job.id)
        if src is None:
            continue
        need: Counter[str] = Counter()
        for p in job.parts:
            need[p.sku] += p.quantity
        if src.van_technician is not None and job.id not in region_jobs:
            elsewhere.setdefault(src.van_technician, Counter()).update(need)
        if src.warehouse is not None and job.id in region_jobs:
            stores.setdefault(src.warehouse, Counter()).update(need)
    techs = [replace(t, van_stock=_minus(t.van_stock, elsewhere.get(t.id))) for t in techs]
    warehouses = tuple(replace(w, stock=_items(stores.get(w.id, Counter())))
                       for w in problem.warehouses)
    return replace(problem, technicians=tuple(techs), jobs=tuple(jobs), warehouses=warehouses)


def _minus(stock: tuple[PartQuantity, ...], held: Counter[str] | None) -> tuple[PartQuantity, ...]:
    if not held:
        return stock
    left = Counter({p.sku: p.quantity for p in stock})
    left.subtract(held)
    return _items(left)


def _items(counter: Counter[str]) -> tuple[PartQuantity, ...]:
    return tuple(PartQuantity(sku, q) for sku, q in sorted(counter.items()) if q > 0)
