"""The Solomon reader and the bench's independent route check on c101."""

from __future__ import annotations

from bench.solomon import DATA, check, read_instance, to_problem


def test_reader_parses_c101():
    inst = read_instance(DATA / "c101.txt")
    assert (inst.name, inst.vehicles, inst.capacity) == ("c101", 25, 200)
    assert len(inst.customers) == 100
    assert (inst.depot.x, inst.depot.y, inst.depot.due) == (40, 50, 1236)
    first = inst.customers[0]
    assert (first.number, first.x, first.y, first.demand, first.ready, first.due, first.service) \
        == (1, 45, 68, 10, 912, 967, 90)


def test_c101_problem_uses_truncated_arcs_scaled_by_ten():
    inst = read_instance(DATA / "c101.txt")
    problem, scale = to_problem(inst, truncate=True)
    assert scale == 10
    assert len(problem.technicians) == 25 and problem.technicians[0].capacity == 200
    # depot (40, 50) to customer 1 (45, 68): 18.68 -> 18.6 -> 186
    assert problem.distance_m[0][1] == 186


def test_check_rejects_routes_that_leave_customers_out():
    inst = read_instance(DATA / "c101.txt")
    everyone = [[c.number] for c in inst.customers[:25]]
    ok, _ = check(inst, everyone, truncate=True)
    assert not ok  # 25 single-customer routes cannot serve 100 customers
