"""One dispatch rule per test, on tiny named instances (see instances.py)."""

from __future__ import annotations

from dataclasses import replace

from dispatch.problem import Warehouse, Window
from dispatch.solver import solve
from tests.dispatch.instances import FAST, HOUR, LUNCH, job, parts, problem, tech


def test_skill_job_goes_only_to_a_technician_with_every_skill():
    p = problem([tech(1, "hvac"), tech(2, "hvac elec", start=9, end=9)],
                [job(1, 1, skills=frozenset({"hvac", "elec"}))])
    assert solve(p, FAST).technician_of(1) == 2


def test_without_technicians_every_job_is_unassigned_with_the_reason():
    s = solve(problem([], [job(1, 1), job(2, 2)]), FAST)
    assert (s.routes, [s.reason(1), s.reason(2)]) == ((), ["no technician on shift"] * 2)


def test_window_service_starts_inside_the_customer_window():
    p = problem([tech(1)], [job(1, 2, windows=(Window(14 * HOUR, 15 * HOUR),))])
    start = solve(p, FAST).stop(1).start_s
    assert 14 * HOUR <= start <= 15 * HOUR


def test_shift_job_that_cannot_finish_before_shift_end_is_not_planned():
    p = problem([tech(1, shift_end_s=9 * HOUR)], [job(1, 5, duration_s=2 * HOUR)])
    s = solve(p, FAST)
    assert s.technician_of(1) is None
    assert "no time" in s.reason(1)


def test_shift_bounded_overtime_lets_the_job_finish_late_at_a_cost():
    # 5 min out + 1 h on site + 5 min back = 10 min past a one-hour shift
    p = problem([tech(1, shift_end_s=9 * HOUR, max_overtime_s=HOUR)], [job(1, 5)])
    s = solve(p, FAST)
    assert s.technician_of(1) == 1
    assert s.objective.overtime_s == 600


def test_break_is_taken_inside_its_window_and_not_during_a_job():
    jobs = [job(i, i, duration_s=2 * HOUR) for i in (1, 2, 3)]
    s = solve(problem([tech(1, meal_break=LUNCH, shift_end_s=19 * HOUR)], jobs), FAST)
    route = s.route(1)
    b = route.break_start_s
    assert LUNCH.earliest_s <= b and b + LUNCH.duration_s <= LUNCH.latest_end_s
    assert len(route.job_ids()) == 3
    for stop in route.stops:
        assert b + LUNCH.duration_s <= stop.start_s or stop.departure_s <= b


def test_part_pickup_precedes_the_job_on_the_same_route():
    p = problem([tech(1)], [job(1, 3, parts=parts("BRG-1"))], [Warehouse(7, 8, parts("BRG-1"))])
    stops = solve(p, FAST).route(1).stops
    assert [(s.kind, s.job_id) for s in stops] == [("pickup", 1), ("job", 1)]
    assert stops[0].warehouse_id == 7


def test_part_in_van_needs_no_pickup():
    p = problem([tech(1, van_stock=parts("BRG-1"))], [job(1, 3, parts=parts("BRG-1"))],
                [Warehouse(7, 8, parts("BRG-1"))])
    stops = solve(p, FAST).route(1).stops
    assert [(s.kind, s.parts_from) for s in stops] == [("job", "van")]


def test_stock_is_never_promised_twice():
    jobs = [job(1, 2, parts=parts("MTR-1"), priority=2), job(2, 4, parts=parts("MTR-1"))]
    s = solve(problem([tech(1), tech(2)], jobs, [Warehouse(7, 6, parts("MTR-1"))]), FAST)
    assert s.technician_of(1) is not None
    assert s.technician_of(2) is None
    assert s.reason(2) == "part MTR-1 out of stock everywhere (needs 1, 0 free)"


def test_en_route_job_stays_first_on_its_technicians_route():
    jobs = [job(1, 9, pinned_technician=1), job(2, 1), job(3, 2)]
    s = solve(problem([tech(1), tech(2, start=9, end=9)], jobs), FAST)
    assert s.route(1).stops[0].job_id == 1


def test_job_under_way_past_the_shift_end_is_still_planned_as_overtime():
    p = problem([tech(1, shift_start_s=16 * HOUR)], [job(1, 0, duration_s=3 * HOUR, pinned_technician=1)])
    s = solve(p, FAST)
    assert (s.technician_of(1), s.objective.overtime_s) == (1, 2 * HOUR)


def test_overtime_of_a_job_under_way_takes_no_further_job():
    jobs = [job(1, 0, duration_s=3 * HOUR, pinned_technician=1), job(2, 1, duration_s=600)]
    s = solve(problem([tech(1, shift_start_s=16 * HOUR)], jobs), FAST)
    assert (s.technician_of(1), s.technician_of(2)) == (1, None)


def test_job_under_way_after_its_window_closed_is_still_planned():
    p = problem([tech(1)], [job(1, 5, pinned_technician=1, windows=(Window(8 * HOUR, 8 * HOUR + 60),))])
    assert solve(p, FAST).technician_of(1) == 1


def test_override_lock_fixes_technician_order_and_time():
    jobs = [job(1, 8, assigned_technician=1, locked_position=0),
            job(2, 2, assigned_technician=1, locked_position=1, locked_start_s=13 * HOUR),
            job(3, 8)]
    s = solve(problem([tech(1), tech(2, start=8, end=8)], jobs), FAST)
    assert s.route(1).job_ids()[:2] == (1, 2)
    assert s.stop(2).start_s == 13 * HOUR


def test_disruption_penalty_keeps_a_dispatched_job_with_its_technician():
    # tech 2 sits 2 km closer; moving the dispatched job saves 4 minutes < disruption penalty
    jobs = [job(1, 5, current_technician=1)]
    techs = [tech(1, start=3, end=3), tech(2, start=4, end=4)]
    assert solve(problem(techs, jobs), FAST).technician_of(1) == 1
    undispatched = problem(techs, [replace(jobs[0], current_technician=None)])
    assert solve(undispatched, FAST).technician_of(1) == 2


def test_priority_decides_which_job_is_dropped():
    jobs = [job(1, 3, priority=4), job(2, 3, priority=1), job(3, 3, priority=3)]
    s = solve(problem([tech(1, shift_end_s=8 * HOUR + 2 * HOUR + 600)], jobs), FAST)
    assert sorted(s.route(1).job_ids()) == [2, 3]
    assert [u.job_id for u in s.unassigned] == [1]


def test_sla_lateness_serves_the_critical_job_first():
    jobs = [job(1, 2, priority=4, response_due_s=9 * HOUR),
            job(2, 3, priority=1, response_due_s=9 * HOUR)]
    s = solve(problem([tech(1)], jobs), FAST)
    assert s.route(1).job_ids()[0] == 2


def test_unassigned_reason_names_the_missing_skill():
    s = solve(problem([tech(1, "hvac")], [job(1, 3, skills=frozenset({"gas"}))]), FAST)
    assert s.reason(1) == "no technician has skill gas"


def test_warm_start_from_previous_plan_keeps_a_feasible_plan():
    jobs = [job(i, i) for i in range(1, 6)]
    p = problem([tech(1), tech(2)], jobs)
    first = solve(p, FAST)
    again = solve(p, replace(FAST, initial_routes=first.initial_routes()))
    assert again.objective.cost <= first.objective.cost
    assert not again.unassigned


def test_same_seed_gives_the_same_plan():
    jobs = [job(i, 1 + i % 10, priority=1 + i % 4, duration_s=1800) for i in range(1, 16)]
    p = problem([tech(1), tech(2), tech(3, start=11, end=11)], jobs)
    params = replace(FAST, seed=7, time_limit_s=2.0, solution_limit=40)
    a, b = solve(p, params), solve(p, params)
    assert a.initial_routes() == b.initial_routes()
    assert a.objective == b.objective
