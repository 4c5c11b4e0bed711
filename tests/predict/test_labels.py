"""Labels around failures and repairs."""

from __future__ import annotations

import numpy as np

from predict import features as F


def grid_of(n: int) -> F.Grid:
    return F.Grid(
        device_ids=np.array([1]), values=np.ones((1, n, 1)), time=np.arange(n, dtype=float).reshape(1, n),
        counts=np.zeros((1, n, 0)), resets=[np.array([10.0, 12.0])], installed=np.array([0.0]),
        group=np.array([0]),
    )


def labels(n: int = 30, failures=None, repairs=((12.0,),)) -> F.Labels:
    failures = [F.Failure(0, 10.0, "bearing")] if failures is None else failures
    grid = grid_of(n)
    steps = np.arange(n)
    return F.make_labels(grid, np.zeros(n, dtype=int), steps, list(failures), [list(r) for r in repairs],
                         horizon=3.0, settle=2.0, min_recent=1)


def test_steps_within_the_horizon_before_a_failure_are_positive():
    lab = labels()
    assert not lab.y[6] and lab.ttf[6] == 4.0
    assert lab.y[7] and lab.y[9] and lab.mode[7] == "bearing"
    assert lab.keep[6] and lab.keep[7] and lab.keep[9]


def test_steps_while_failed_are_dropped():
    lab = labels()
    assert not lab.keep[10] and not lab.keep[11]


def test_settling_window_after_the_repair_is_dropped():
    lab = labels()
    assert not lab.keep[13]
    assert lab.keep[14] and not lab.y[14]


def test_without_a_known_repair_the_failure_itself_starts_the_settling_window():
    lab = labels(repairs=((),))
    assert not lab.keep[10] and not lab.keep[11]
    assert lab.keep[12]


def test_unknown_outcome_at_the_end_of_the_data_is_dropped():
    lab = labels()
    assert lab.keep[26] and not lab.keep[27]  # last step 29: 27 + 3 would be past the data
