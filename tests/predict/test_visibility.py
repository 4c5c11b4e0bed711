"""The visibility bench: best single feature, catch windows and healthy episodes, counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.predict_visibility import (
    Visibility,
    best_feature,
    catch_windows,
    describe,
    episodes,
    visibility,
)
from predict import features as F
from predict import model as M

W = 12.0  # catch window [f - 12, f - 2]


def test_the_feature_catching_most_failures_wins_whatever_its_sign():
    healthy = np.r_[np.ones(100, dtype=bool), np.zeros(3, dtype=bool)]
    a = np.r_[np.arange(100.0), 500.0, 50.0, 50.0]  # beyond its 0.99 quantile on failure 0 only
    b = np.r_[np.arange(100.0), -5.0, -5.0, 50.0]  # below its 0.01 quantile on failures 0 and 1
    window_failure = np.r_[np.full(100, -1), 0, 1, 2]
    best = best_feature(np.column_stack([a, b]), ["a", "b"], healthy, window_failure, 0.99)
    assert best == Visibility(2, "-b", pytest.approx(0.99))


def test_a_failure_is_caught_only_strictly_beyond_the_healthy_quantile():
    healthy = np.r_[np.ones(100, dtype=bool), False]
    x = np.r_[np.zeros(100), 0.0][:, None]  # the failure's sample equals every healthy value
    assert best_feature(x, ["a"], healthy, np.r_[np.full(100, -1), 0], 0.999).caught == 0


def test_ties_keep_the_first_feature_and_the_upper_side():
    healthy = np.r_[np.ones(10, dtype=bool), False]
    x = np.column_stack([np.r_[np.zeros(10), 1.0], np.r_[np.zeros(10), -1.0]])
    best = best_feature(x, ["a", "b"], healthy, np.r_[np.full(10, -1), 0], 0.9)
    assert best.feature == "+a"


def test_alerts_less_than_the_gap_apart_on_one_device_are_one_episode():
    dev = np.array([1, 0, 0, 0, 1])
    time = np.array([5.0, 0.0, 3.0, 10.0, 6.0])  # device 0: 0, 3 | 10; device 1: 5, 6
    assert episodes(dev, time, gap=4.0) == 3
    assert episodes(dev[:0], time[:0], gap=4.0) == 0


def _dataset(failures: list[F.Failure], steps: int = 200) -> M.Dataset:
    n = 3
    grid = F.Grid(device_ids=np.arange(10, 10 + n), values=np.ones((n, steps, 1)),
                  time=np.tile(np.arange(steps, dtype=np.float64), (n, 1)), counts=np.zeros((n, steps, 0)),
                  resets=[np.array([]) for _ in range(n)], installed=np.zeros(n),
                  group=np.zeros(n, dtype=np.int64), slot_names=[["vibration_mm_s"]])
    return M.build_dataset(grid, failures, [[] for _ in range(n)], W, settle=2.0)


def test_catch_windows_hold_the_samples_from_w_to_the_minimum_lead_before_each_failure():
    failures = [F.Failure(1, 100.0, "m")]
    ds = _dataset(failures)
    win = catch_windows(ds, failures, min_lead=2.0)
    held = ds.time[win == 0]
    assert (ds.dev[win == 0] == 1).all()
    assert held.min() == 88.0 and held.max() == 98.0 and len(held) == 11


def test_visibility_counts_the_failures_the_best_feature_catches_per_mode():
    failures = [F.Failure(1, 100.0, "m"), F.Failure(2, 150.0, "m")]
    ds = _dataset(failures)
    x = np.zeros((len(ds.dev), 1))
    x[(ds.dev == 1) & (ds.time >= 90) & (ds.time <= 95), 0] = 10.0  # only the first failure shows
    out = visibility(ds, x, ["m0:z_6"], {"m/0": failures}, quantiles=(0.99,))
    assert out["modes"]["m/0"] == {"failures": 2, "0.99": {
        "caught": 1, "feature": "+m0:z_6 (vibration_mm_s)", "healthy_episodes": 0}}
    assert out["visible_share"] == {"0.99": 0.5}


def test_features_of_no_slot_are_described_as_they_are():
    assert describe("-since_reset", ["a"]) == "-since_reset"
    assert describe("+m1:resid_6", ["a", "b"]) == "+m1:resid_6 (b)"
    assert describe("+m2:z_6", ["a", "b"]) == "+m2:z_6"
