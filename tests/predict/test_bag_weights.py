"""Bag weights: each failure's catch window weighs as one bag, spread towards its best scores."""

from __future__ import annotations

import numpy as np
import pytest

from predict import features as F
from predict import model as M

HORIZON = 12.0  # so the catch window is 2-12 before a failure


def _dataset(n_dev: int, n: int, fail_at: list[float]) -> M.Dataset:
    grid = F.Grid(device_ids=np.arange(100, 100 + n_dev), values=np.ones((n_dev, n, 1)),
                  time=np.tile(np.arange(n, dtype=float), (n_dev, 1)), counts=np.zeros((n_dev, n, 0)),
                  resets=[np.array(fail_at)] * n_dev, installed=np.zeros(n_dev), group=np.zeros(n_dev, dtype=int))
    dev, step = np.repeat(np.arange(n_dev), n), np.tile(np.arange(n), n_dev)
    failures = [F.Failure(i, t) for i in range(n_dev) for t in fail_at]
    labels = F.make_labels(grid, dev, step, failures, [[]] * n_dev, HORIZON, 2.0)
    return M.Dataset(grid, dev, step, grid.time[dev, step], labels, failures, HORIZON)


def test_a_bag_holds_the_positives_in_its_failures_catch_window():
    ds = _dataset(1, 40, [30.0])
    bags = M.bag_ids(ds)
    assert list(ds.time[bags == 0]) == list(np.arange(18.0, 29.0))  # 12 to 2 before the failure
    assert (bags[(ds.time < 18) | (ds.time > 28)] == -1).all()


def test_each_failure_has_its_own_bag():
    ds = _dataset(2, 80, [30.0, 70.0])
    bags = M.bag_ids(ds)
    assert len(np.unique(bags[bags >= 0])) == 4
    assert len(np.unique(bags[(ds.dev == 0) & (ds.time < 30) & (bags >= 0)])) == 1


def test_a_bag_keeps_its_size_as_its_total_weight():
    w = M.bag_weights(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.5, 0.9, 0.2, 0.7]))
    assert w[:3].sum() == pytest.approx(3.0) and w[3:].sum() == pytest.approx(2.0)


def test_a_bags_weight_goes_mostly_to_its_highest_scores():
    w = M.bag_weights(np.array([0, 0, 0]), np.array([0.1, 0.5, 0.9]))
    assert w[0] < w[1] < w[2] and w[2] > 2.0


def test_a_lower_temperature_puts_more_of_a_bag_on_its_top_score():
    bags, scores = np.array([0, 0, 0]), np.array([0.1, 0.5, 0.9])
    assert M.bag_weights(bags, scores, 0.5)[2] > M.bag_weights(bags, scores, 1.0)[2]


def test_samples_outside_bags_weigh_one():
    w = M.bag_weights(np.array([-1, 0, -1, 0]), np.array([0.99, 0.3, 0.01, 0.6]))
    assert w[0] == 1.0 and w[2] == 1.0


class _WeightRecorder:
    """Estimator double: scores column 0 as the probability, remembers its fit's weights."""

    weights: list[np.ndarray] = []

    def fit(self, x, y, sample_weight=None):
        _WeightRecorder.weights.append(sample_weight)
        return self

    def predict_proba(self, x):
        return np.column_stack([1 - x[:, 0], x[:, 0]])


def test_the_final_fit_is_weighted_by_the_inner_halves_scores(monkeypatch):
    monkeypatch.setattr(M, "candidates", lambda seed=0: {"w": _WeightRecorder})
    monkeypatch.setattr(_WeightRecorder, "weights", [])
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    bags = np.array([0, 0, -1, -1, 1, 1, -1, -1])
    x = np.array([[0.2], [0.8], [0.1], [0.1], [0.6], [0.4], [0.1], [0.1]])
    M.fit_bagged("w", 0, x, y, bags, np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    assert len(_WeightRecorder.weights) == 3
    assert np.allclose(_WeightRecorder.weights[-1], M.bag_weights(bags, x[:, 0]))


def test_without_two_positives_in_each_half_the_fit_is_unweighted(monkeypatch):
    monkeypatch.setattr(M, "candidates", lambda seed=0: {"w": _WeightRecorder})
    monkeypatch.setattr(_WeightRecorder, "weights", [])
    y = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    x = np.array([[0.2], [0.8], [0.5], [0.1], [0.1], [0.1]])
    M.fit_bagged("w", 0, x, y, np.array([0, 0, 0, -1, -1, -1]), np.array([0, 0, 0, 1, 1, 1]))
    assert len(_WeightRecorder.weights) == 1 and (_WeightRecorder.weights[0] == 1.0).all()
