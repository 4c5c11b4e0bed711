"""The improvement search (dispatch.search): one rule per test on tiny line instances."""

from __future__ import annotations

from dataclasses import replace

from dispatch.problem import Window
from dispatch.search import improve
from dispatch.solver import solve
from tests.dispatch.instances import FAST, HOUR, LUNCH, job, parts, problem, tech

ITERATIONS = 300


def travel_s(p, technician, route):
    stops = [technician.start, *(p.job(j).location for j in route), technician.end]
    return sum(p.duration_s[a][b] for a, b in zip(stops, stops[1:], strict=False))


def starts(p, technician, route):
    """Earliest service start of every job on the route (waiting for windows allowed)."""
    t, here, out = technician.shift_start_s, technician.start, {}
    for j in route:
        jb = p.job(j)
        t += p.duration_s[here][jb.location]
        if jb.windows:
            t = max(t, jb.windows[0].start_s)
        out[j] = t
        t += jb.duration_s
        here = jb.location
    return out, t + p.duration_s[here][technician.end]


def test_improvement_turns_a_zigzag_route_into_one_sweep():
    p = problem([tech(1)], [job(i, i, duration_s=600) for i in range(1, 6)])
    found = improve(p, {1: [5, 1, 4, 2, 3]}, [], 1.0, seed=1, iterations=ITERATIONS)
    assert travel_s(p, p.technician(1), found.routes[1]) == 10 * 60  # out to km 5 and back


def test_improvement_never_costs_more_than_its_start():
    jobs = [job(i, 1 + i % 10, duration_s=1200, priority=1 + i % 4) for i in range(1, 13)]
    p = problem([tech(1), tech(2, start=11, end=11)], jobs)
    start = {1: [j.id for j in jobs[:6]], 2: [j.id for j in jobs[6:]]}
    found = improve(p, start, [], 1.0, seed=3, iterations=ITERATIONS)
    assert found.cost <= found.start_cost


def test_improvement_places_an_unassigned_job_where_there_is_room():
    p = problem([tech(1)], [job(1, 2), job(2, 3)])
    found = improve(p, {1: [1]}, [2], 1.0, seed=1, iterations=ITERATIONS)
    assert sorted(found.routes[1]) == [1, 2]


def test_improved_routes_keep_customer_windows():
    # going out in one sweep (km 1 then km 6) would reach km 1 before its window opens
    late, early = Window(15 * HOUR, 16 * HOUR), Window(8 * HOUR, 9 * HOUR)
    p = problem([tech(1)], [job(1, 1, windows=(late,)), job(2, 6, windows=(early,))])
    found = improve(p, {1: [2, 1]}, [], 1.0, seed=1, iterations=ITERATIONS)
    at, _ = starts(p, p.technician(1), found.routes[1])
    assert all(w.start_s <= at[j] <= w.end_s for j, w in ((1, late), (2, early)))


def test_improved_routes_respect_load_capacity():
    techs = [tech(1, capacity=10), tech(2, capacity=10, start=9, end=9)]
    jobs = [job(i, i, duration_s=600, demand=6) for i in (1, 2, 3)]
    # dropping job 3 costs far more than any detour, but no van has room for a second job
    found = improve(problem(techs, jobs), {1: [1], 2: [2]}, [3], 1.0, seed=1,
                    iterations=ITERATIONS)
    loads = [sum(6 for _ in r) for r in found.routes.values()]
    assert max(loads) <= 10


def test_improved_routes_give_jobs_only_to_technicians_with_every_skill():
    # the gas job sits next to tech 1's depot, but only tech 2 has the skill
    techs = [tech(1, "hvac"), tech(2, "hvac gas", start=9, end=9)]
    jobs = [job(1, 1, skills=frozenset({"gas"})), job(2, 8)]
    found = improve(problem(techs, jobs), {1: [2], 2: [1]}, [], 1.0, seed=1,
                    iterations=ITERATIONS)
    assert 1 in found.routes[2]


def test_improved_routes_end_within_the_shift():
    # 4 one-hour jobs but a 3.5-hour shift: one job must stay unassigned
    p = problem([tech(1, shift_end_s=8 * HOUR + 3 * HOUR + 1800)], [job(i, 1) for i in (1, 2, 3, 4)])
    found = improve(p, {1: [1, 2]}, [3, 4], 1.0, seed=1, iterations=ITERATIONS)
    _, back = starts(p, p.technician(1), found.routes[1])
    assert back <= p.technician(1).shift_end_s and len(found.routes[1]) == 3


def test_route_with_a_pinned_job_is_left_as_it_is():
    # jobs 2 and 3 would be cheaper with tech 2, but tech 1's route holds a pinned job
    jobs = [job(1, 9, pinned_technician=1), job(2, 8), job(3, 9), job(4, 7)]
    techs = [tech(1), tech(2, start=9, end=9)]
    found = improve(problem(techs, jobs), {1: [1, 2, 3], 2: [4]}, [], 1.0, seed=1,
                    iterations=ITERATIONS)
    assert 1 not in found.routes and found.routes[2] == (4,)


def test_route_with_a_job_needing_parts_is_left_as_it_is():
    jobs = [job(1, 9, parts=parts("BRG-1")), job(2, 8), job(3, 9), job(4, 7)]
    techs = [tech(1, van_stock=parts("BRG-1")), tech(2, start=9, end=9)]
    found = improve(problem(techs, jobs), {1: [1, 2, 3], 2: [4]}, [], 1.0, seed=1,
                    iterations=ITERATIONS)
    assert 1 not in found.routes and found.routes[2] == (4,)


def test_dispatcher_assigned_job_stays_with_its_technician():
    # job 1 sits at tech 2's depot, but the dispatcher gave it to tech 1
    techs = [tech(1), tech(2, start=9, end=9)]
    jobs = [job(1, 9, assigned_technician=1), job(2, 8)]
    found = improve(problem(techs, jobs), {1: [1], 2: [2]}, [], 1.0, seed=1,
                    iterations=ITERATIONS)
    assert 1 in found.routes[1]


def break_fits(p, technician, route):
    """Whether the meal break fits somewhere on the route, as the routing model places it:
    between two stops (or on the way out or back), after the route, or before the shift."""
    b = technician.meal_break
    latest = b.latest_end_s - b.duration_s
    stops = [p.job(j) for j in route]
    before = b.earliest_s + b.duration_s <= technician.shift_start_s
    # gap -1: before the shift; len(stops) + 1: after coming back
    for gap in range(-1 if before else 0, len(stops) + 2):
        t, here, ok = technician.shift_start_s, technician.start, True
        for k, jb in enumerate([*stops, None]):
            to = technician.end if jb is None else jb.location
            travel = p.duration_s[here][to]
            if k == gap:
                if max(t, b.earliest_s) > latest:
                    ok = False
                    break
                t = max(t + travel, max(t, b.earliest_s)) + b.duration_s
            else:
                t += travel
            if jb is None:
                break
            if jb.windows:
                t = max(t, jb.windows[0].start_s)
                if t > jb.windows[0].end_s:
                    ok = False
                    break
            t += jb.duration_s
            here = jb.location
        if gap == len(stops) + 1:
            ok = ok and t <= latest
        if ok and t <= technician.shift_end_s + technician.max_overtime_s:
            return True
    return False


def test_technician_with_a_meal_break_is_improved_too():
    p = problem([tech(1, meal_break=LUNCH)], [job(i, i, duration_s=3600) for i in range(1, 6)])
    found = improve(p, {1: [5, 1, 4, 2, 3]}, [], 1.0, seed=1, iterations=ITERATIONS)
    assert travel_s(p, p.technician(1), found.routes[1]) == 10 * 60


def test_no_route_is_produced_where_the_meal_break_cannot_fit():
    # jobs 1 and 2 back to back would keep tech 1 busy from 11:30 to 13:30, the whole lunch
    # window; giving job 2 to tech 1 would save tech 2 its 16 min round trip (the dispatcher
    # gave job 1 to tech 1)
    w1, w2 = Window(11 * HOUR + 1800, 11 * HOUR + 1800), Window(12 * HOUR + 1800, 12 * HOUR + 1800)
    techs = [tech(1, meal_break=LUNCH), tech(2, start=9, end=9)]
    jobs = [job(1, 1, windows=(w1,), assigned_technician=1), job(2, 1, windows=(w2,))]
    found = improve(problem(techs, jobs), {1: [1], 2: [2]}, [], 1.0, seed=1,
                    iterations=ITERATIONS)
    assert found.routes == {1: (1,), 2: (2,)}


def test_improved_routes_leave_room_for_every_meal_break():
    windows = [(), (Window(9 * HOUR, 11 * HOUR),), (Window(12 * HOUR, 13 * HOUR),),
               (Window(13 * HOUR, 15 * HOUR),)]
    jobs = [job(i, 1 + i % 10, duration_s=1800 + 600 * (i % 3), windows=windows[i % 4])
            for i in range(1, 19)]
    techs = [tech(1, meal_break=LUNCH), tech(2, meal_break=LUNCH),
             tech(3, start=11, end=11, meal_break=LUNCH)]
    p = problem(techs, jobs)
    found = improve(p, {1: [], 2: [], 3: []}, [j.id for j in jobs], 1.0, seed=2,
                    iterations=ITERATIONS)
    assert all(break_fits(p, p.technician(t), r) for t, r in found.routes.items())


def test_same_seed_gives_the_same_improvement_with_meal_breaks():
    jobs = [job(i, 1 + i % 10, duration_s=1800) for i in range(1, 16)]
    techs = [tech(1, meal_break=LUNCH), tech(2, meal_break=LUNCH),
             tech(3, start=11, end=11, meal_break=LUNCH)]
    p = problem(techs, jobs)
    start = {1: [j.id for j in jobs[:5]], 2: [j.id for j in jobs[5:10]], 3: [j.id for j in jobs[10:]]}
    a = improve(p, start, [], 1.0, seed=7, iterations=ITERATIONS)
    b = improve(p, start, [], 1.0, seed=7, iterations=ITERATIONS)
    assert a == b


def test_same_seed_gives_the_same_improvement():
    jobs = [job(i, 1 + i % 10, duration_s=1800) for i in range(1, 16)]
    p = problem([tech(1), tech(2), tech(3, start=11, end=11)], jobs)
    start = {1: [j.id for j in jobs[:5]], 2: [j.id for j in jobs[5:10]], 3: [j.id for j in jobs[10:]]}
    a = improve(p, start, [], 1.0, seed=7, iterations=ITERATIONS)
    b = improve(p, start, [], 1.0, seed=7, iterations=ITERATIONS)
    assert a == b


def test_solve_with_the_search_never_costs_more_than_without():
    jobs = [job(i, 1 + i % 10, duration_s=1800, priority=1 + i % 4,
                response_due_s=(9 + i % 6) * HOUR) for i in range(1, 16)]
    p = problem([tech(1), tech(2), tech(3, start=11, end=11)], jobs)
    params = replace(FAST, solution_limit=5)
    without = solve(p, replace(params, search_share=0))
    searched = solve(p, replace(params, search_iterations=ITERATIONS))
    assert searched.objective.cost <= without.objective.cost


def test_solve_with_the_search_keeps_every_meal_break_in_its_window():
    jobs = [job(i, 1 + i % 10, duration_s=1800, priority=1 + i % 4,
                response_due_s=(9 + i % 6) * HOUR) for i in range(1, 16)]
    techs = [tech(1, meal_break=LUNCH), tech(2, meal_break=LUNCH),
             tech(3, start=11, end=11, meal_break=LUNCH)]
    solution = solve(problem(techs, jobs), replace(FAST, solution_limit=5,
                                                   search_iterations=ITERATIONS))
    latest = LUNCH.latest_end_s - LUNCH.duration_s
    assert all(LUNCH.earliest_s <= r.break_start_s <= latest for r in solution.routes)


def test_solve_keeps_the_search_improvement_for_technicians_with_meal_breaks():
    jobs = [job(i, 1 + i % 10, duration_s=1800, priority=1 + i % 4,
                response_due_s=(9 + i % 6) * HOUR) for i in range(1, 16)]
    techs = [tech(1, meal_break=LUNCH), tech(2, meal_break=LUNCH),
             tech(3, start=11, end=11, meal_break=LUNCH)]
    p = problem(techs, jobs)
    params = replace(FAST, solution_limit=5)
    without = solve(p, replace(params, search_share=0))
    searched = solve(p, replace(params, search_iterations=ITERATIONS))
    assert searched.objective.cost < without.objective.cost
