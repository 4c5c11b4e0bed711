"""Deterministic pre-allocation of spare parts to jobs before routing.

Why pre-allocation instead of a stock dimension: OR-Tools dimensions accumulate along one
route, while stock is shared by every route that could visit the same warehouse. A global
constraint would have to be rebuilt per SKU and warehouse; pre-allocation is simpler and
provably consistent: jobs are taken in order (priority, response deadline, id) and each unit
is decremented from exactly one source before the next job is considered, so the sum of
reservations from any van or warehouse never exceeds its quantity. Each job gets at most two
sources: the van of the qualified technician nearest to the job (the job may then go to that
technician without a detour) and the nearest warehouse holding every part (any qualified
technician picks them up on the way). Both are held while solving; the plan keeps only the
one its route uses. The price of this conservatism is that a held but unused unit is not
offered to a lower-priority job in the same solve.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from dispatch.problem import Job, Problem, Technician


@dataclass(frozen=True, slots=True)
class PartSources:
    """Where a job's parts come from: a technician's van and/or a warehouse (ids)."""

    van_technician: int | None = None
    warehouse: int | None = None


def _covers(stock: Counter[str], job: Job) -> bool:
    return all(stock[p.sku] >= p.quantity for p in job.parts)


def _take(stock: Counter[str], job: Job) -> None:
    for p in job.parts:
        stock[p.sku] -= p.quantity


def _order(job: Job) -> tuple[int, int, int]:
    due = job.response_due_s if job.response_due_s is not None else 2**62
    return (job.priority, due, job.id)


def allocate(problem: Problem, qualified: dict[int, list[Technician]]
             ) -> tuple[dict[int, PartSources], dict[int, str]]:
    """Return part sources per job needing parts, and a reason per job whose parts are missing.

    ``qualified`` maps a job id to the technicians allowed to do it.
    """
    vans = {t.id: Counter({p.sku: p.quantity for p in t.van_stock}) for t in problem.technicians}
    stores = {w.id: Counter({p.sku: p.quantity for p in w.stock}) for w in problem.warehouses}
    where = {w.id: w.location for w in problem.warehouses}
    dur = problem.duration_s
    sources: dict[int, PartSources] = {}
    reasons: dict[int, str] = {}
    # en-route and on-site jobs already carry their parts
    needing = (j for j in problem.jobs if j.parts and j.pinned_technician is None)
    for job in sorted(needing, key=_order):
        techs = qualified.get(job.id, [])
        van = min(
            (t for t in techs if _covers(vans[t.id], job)),
            key=lambda t: (dur[t.start][job.location], t.id),
            default=None,
        )
        store = min(
            (w for w in problem.warehouses if _covers(stores[w.id], job)),
            key=lambda w: (dur[where[w.id]][job.location], w.id),
            default=None,
        )
        if van is None and store is None:
            reasons[job.id] = _missing(job, vans, stores)
            continue
        if van is not None:
            _take(vans[van.id], job)
        if store is not None:
            _take(stores[store.id], job)
        sources[job.id] = PartSources(van.id if van else None, store.id if store else None)
    return sources, reasons


def _missing(job: Job, vans: dict[int, Counter[str]], stores: dict[int, Counter[str]]) -> str:
    for p in job.parts:
        total = sum(c[p.sku] for c in (*vans.values(), *stores.values()))
        if total < p.quantity:
            return f"part {p.sku} out of stock everywhere (needs {p.quantity}, {total} free)"
    skus = ", ".join(p.sku for p in job.parts)
    return f"parts {skus} are not free together in any one warehouse or qualified technician's van"
