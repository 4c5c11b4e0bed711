"""Solomon VRPTW bench through the project's own Problem and solver.

``python -m bench.solomon [--time-limit S] [--routes-out FILE] [instance ...]`` prints one JSON
line per instance and a last line with the mean gap per class and overall. ``cpu_s`` is the
process CPU time the solve used: on a shared machine it shows how much of ``time_s`` the
solver actually got.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dispatch.problem import Job, Params, Problem, Technician, Window
from dispatch.solver import solve
from dispatch.weights import DISTANCE_ONLY


def _data_dir() -> Path:
    """``../shared/bench/solomon`` next to the project (or next to an enclosing checkout)."""
    project = Path(__file__).resolve().parents[1]
    for base in (project, *project.parents):
        candidate = base.parent / "shared" / "bench" / "solomon"
        if candidate.is_dir():
            return candidate
    return project.parent / "shared" / "bench" / "solomon"


DATA = _data_dir()
CLASSES = ("C1", "C2", "R1", "R2", "RC1", "RC2")


@dataclass(frozen=True, slots=True)
class Customer:
    number: int
    x: float
    y: float
    demand: int
    ready: int
    due: int
    service: int


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    vehicles: int
    capacity: int
    depot: Customer
    customers: tuple[Customer, ...]


def read_instance(path: Path) -> Instance:
    """Parse the classic Solomon text format (also used by Gehring-Homberger instances)."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    name = lines[0].lower()
    head = next(i for i, ln in enumerate(lines) if ln.upper().startswith("NUMBER"))
    vehicles, capacity = (int(x) for x in lines[head + 1].split()[:2])
    rows = [ln.split() for ln in lines if re.fullmatch(r"[\d\s.]+", ln)][1:]
    custs = [Customer(int(r[0]), float(r[1]), float(r[2]), int(float(r[3])), int(float(r[4])),
                      int(float(r[5])), int(float(r[6]))) for r in rows if len(r) >= 7]
    if not custs or custs[0].number != 0:
        raise ValueError(f"{path}: no depot row (customer 0)")
    return Instance(name, vehicles, capacity, custs[0], tuple(custs[1:]))


def euclid(a: Customer, b: Customer) -> float:
    return math.hypot(a.x - b.x, a.y - b.y)


def arc(a: Customer, b: Customer, truncate: bool) -> float:
    """Arc length: truncated to one decimal (distance-minimising literature) or real."""
    d = euclid(a, b)
    return math.floor(d * 10) / 10 if truncate else d


def to_problem(inst: Instance, truncate: bool) -> tuple[Problem, int]:
    """Vehicles become technicians at the depot, demand a load capacity; returns (problem, scale)."""
    scale = 10 if truncate else 1000
    pts = (inst.depot, *inst.customers)
    # truncated arcs are exact in tenths; real arcs are rounded up, so that a route feasible in
    # integers is feasible in real arithmetic too
    to_int = round if truncate else math.ceil
    matrix = tuple(tuple(to_int(arc(a, b, truncate) * scale) for b in pts) for a in pts)
    techs = tuple(
        Technician(id=v, start=0, end=0, shift_start_s=inst.depot.ready * scale,
                   shift_end_s=inst.depot.due * scale, capacity=inst.capacity)
        for v in range(inst.vehicles))
    jobs = tuple(
        Job(id=c.number, location=i + 1, duration_s=c.service * scale, demand=c.demand,
            windows=(Window(c.ready * scale, c.due * scale),))
        for i, c in enumerate(inst.customers))
    weights = replace(DISTANCE_ONLY, unassigned={p: 10**10 for p in range(1, 5)})
    return Problem(techs, jobs, matrix, matrix, weights=weights), scale


def check(inst: Instance, routes: list[list[int]], truncate: bool) -> tuple[bool, float]:
    """Independent check of routes (customer numbers) in real arithmetic: (feasible, distance)."""
    by_no = {c.number: c for c in inst.customers}
    seen = [n for r in routes for n in r]
    ok = sorted(seen) == sorted(by_no) and len(routes) <= inst.vehicles
    total = 0.0
    for r in routes:
        t, load, prev = float(inst.depot.ready), 0, inst.depot
        for n in r:
            c = by_no[n]
            d = arc(prev, c, truncate)
            total += d
            t = max(t + d, c.ready)
            ok &= t <= c.due + 1e-9
            t += c.service
            load += c.demand
            prev = c
        d = arc(prev, inst.depot, truncate)
        total += d
        ok &= t + d <= inst.depot.due + 1e-9 and load <= inst.capacity
    return ok, total


def references(data: Path) -> tuple[dict[str, float], dict[str, float]]:
    def load(name: str) -> dict[str, float]:
        with (data / name).open() as fh:
            return {row["instance"].lower(): float(row["distance"]) for row in csv.DictReader(fh)}
    return load("bks_distance_min.csv"), load("bks.csv")


def instance_class(name: str) -> str | None:
    m = re.fullmatch(r"(rc|r|c)([12])\d\d", name)
    return f"{m.group(1).upper()}{m.group(2)}" if m else None


def run(path: Path, time_limit: float, optima: dict[str, float], bks: dict[str, float]
        ) -> tuple[dict, list[list[int]]]:
    inst = read_instance(path)
    name = path.stem.lower()
    truncate = name in optima
    problem, _ = to_problem(inst, truncate)
    started, cpu = time.monotonic(), time.process_time()
    solution = solve(problem, Params(time_limit_s=time_limit, seed=1))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    routes = [list(r.job_ids()) for r in solution.routes if r.stops]
    feasible, distance = check(inst, routes, truncate)
    reference = optima.get(name, bks.get(name))
    gap = None if reference is None else round(100 * (distance / reference - 1), 3) + 0.0
    line = {"instance": name, "vehicles": len(routes), "distance": round(distance, 2),
            "reference": reference, "gap_pct": gap, "feasible": feasible,
            "time_s": round(elapsed, 2), "cpu_s": round(cpu, 2)}
    return line, routes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.solomon", description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per instance")
    ap.add_argument("--routes-out", type=Path, help="write every instance's routes here")
    ap.add_argument("--data", type=Path, default=DATA, help="directory of Solomon instances")
    ap.add_argument("--optima", action="store_true",
                    help="only the instances with a distance-minimising optimum")
    ap.add_argument("instances", nargs="*", help="names such as c101, or paths; default: all")
    args = ap.parse_args(argv)
    optima, bks = references(args.data)
    names = list(args.instances) + (sorted(optima) if args.optima else [])
    paths = [Path(x) if ("/" in x or x.endswith(".txt")) else args.data / f"{x.lower()}.txt"
             for x in names] or sorted(args.data.glob("*.txt"))
    gaps: dict[str, list[float]] = {}
    cpu: list[float] = []
    infeasible = 0
    out = args.routes_out.open("w") if args.routes_out else None
    try:
        for path in paths:
            line, routes = run(path, args.time_limit, optima, bks)
            print(json.dumps(line), flush=True)
            if out:
                out.write(line["instance"] + "\n")
                out.writelines(" ".join(map(str, r)) + "\n" for r in routes)
            cpu.append(line["cpu_s"])
            infeasible += not line["feasible"]
            cls = instance_class(line["instance"])
            if line["gap_pct"] is not None:
                gaps.setdefault(cls or "other", []).append(line["gap_pct"])
    finally:
        if out:
            out.close()
    summary = {f"mean_gap_pct_{k}": round(sum(v) / len(v), 3) for k, v in sorted(gaps.items())}
    every = [g for v in gaps.values() for g in v]
    summary["mean_gap_pct_overall"] = round(sum(every) / len(every), 3) if every else None
    summary["max_gap_pct"] = max(every, default=None)
    summary["over_4_pct"] = sum(g > 4 for g in every)
    summary["infeasible"] = infeasible
    summary["mean_cpu_s"] = round(sum(cpu) / len(cpu), 2) if cpu else None
    summary["instances"] = len(paths)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
