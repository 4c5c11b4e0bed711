"""Event-based evaluation: alert episodes, caught failures and lead times, counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from predict import features as F
from predict import model as M

HORIZON = 12.0  # so the minimum lead is 2 and alerts more than 4 apart start a new episode


def dataset(n: int, failures: list[float]) -> M.Dataset:
    grid = F.Grid(
        device_ids=np.array([1]), values=np.ones((1, n, 1)), time=np.arange(n, dtype=float).reshape(1, n),
        counts=np.zeros((1, n, 0)), resets=[np.array(failures)], installed=np.array([0.0]),
        group=np.array([0]),
    )
    steps = np.arange(n)
    labels = F.Labels(keep=np.ones(n, dtype=bool), y=np.zeros(n, dtype=bool), ttf=np.full(n, np.nan),
                      mode=np.full(n, "", dtype=object))
    return M.Dataset(grid, np.zeros(n, dtype=np.int64), steps, steps.astype(float), labels,
                     [F.Failure(0, t) for t in failures], HORIZON)


def scores(n: int, alerts: list[int]) -> np.ndarray:
    s = np.zeros(n)
    s[alerts] = 1.0
    return s


def test_an_alert_too_early_is_false_and_one_in_the_horizon_is_true():
    ds = dataset(200, [150.0])
    ev = M.alert_events(ds, scores(200, [100, 140, 141, 143]), 0.5)
    assert (ev["alerts"], ev["true_alerts"]) == (2, 1)  # episodes starting at 100 and 140
    assert ev["precision"] == pytest.approx(0.5)
    assert ev["recall"] == 1.0 and ev["median_lead"] == 10.0


def test_alerts_closer_than_the_gap_are_one_episode():
    ds = dataset(200, [150.0])
    ev = M.alert_events(ds, scores(200, [139, 142, 146]), 0.5)
    assert ev["alerts"] == 1 and ev["precision"] == 1.0 and ev["median_lead"] == 11.0


def test_a_failure_alerted_only_in_the_last_hours_is_missed():
    ds = dataset(200, [150.0])
    ev = M.alert_events(ds, scores(200, [149]), 0.5)  # lead 1 < minimum lead 2
    assert ev["recall"] == 0.0 and ev["failures"] == 1
    assert np.isnan(ev["median_lead"])


def test_a_false_episode_within_three_horizons_of_the_failure_counts_as_early():
    ds = dataset(300, [150.0])
    ev = M.alert_events(ds, scores(300, [20, 120]), 0.5)  # 130 and 30 ahead of the failure (W 12)
    assert (ev["alerts"], ev["true_alerts"], ev["early_alerts"]) == (2, 0, 1)


def test_recall_counts_each_failure_once():
    ds = dataset(300, [100.0, 250.0])
    ev = M.alert_events(ds, scores(300, [95, 96, 97]), 0.5)
    assert ev["failures"] == 2 and ev["recall"] == pytest.approx(0.5)
    assert [o.caught for o in ev["outcomes"]] == [True, False]


def test_the_threshold_is_the_lowest_score_value_reaching_the_target_precision():
    ds = dataset(400, [150.0, 350.0])
    s = np.zeros(400)
    s[50], s[140], s[340] = 0.3, 0.848, 1.0  # one false alert, two true ones
    assert M.choose_threshold(ds, s, target_precision=0.8) == pytest.approx(0.848)


def test_a_model_trained_with_pooled_features_scores_with_the_features_it_was_trained_on(tmp_path):
    from predict import csvio
    from tests.predict import synth

    readings, failures = synth.write_history(tmp_path)
    r = csvio.read_readings(readings)
    fails = csvio.read_failures(failures, r)
    csvio.with_resets(r, fails)
    ds = M.build_dataset(r.grid, fails, [[] for _ in r.device_ids], 60.0, 20.0)
    result = M.train(ds, F.FeatureSpec(n_slots=3), estimators=["logistic_regression"], pooled=True)
    spec = result.model.spec
    assert spec.pooled_scale and "pool:z_max_6" in F.feature_names(spec)
    x = F.compute(ds.grid, spec, result.test.dev, result.test.step)
    assert np.allclose(x, result.test_x, equal_nan=True)
