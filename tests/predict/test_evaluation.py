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


def test_the_threshold_by_job_precision_counts_an_early_episode_that_lasts_into_its_catch_window():
    ds = dataset(400, [150.0])
    s = np.zeros(400)
    s[130:147] = 0.5  # from 20 h ahead (W 12) into the catch window: early, held
    s[140:147] = 0.9  # within the horizon
    assert M.choose_threshold(ds, s, target_precision=0.8) == pytest.approx(0.9)
    assert M.choose_threshold(ds, s, target_precision=0.8, key="job_precision") == pytest.approx(0.5)


def _synth_dataset(tmp_path, devices: int = 24) -> M.Dataset:
    from predict import csvio
    from tests.predict import synth

    readings, failures = synth.write_history(tmp_path, devices=devices)
    r = csvio.read_readings(readings)
    fails = csvio.read_failures(failures, r)
    csvio.with_resets(r, fails)
    return M.build_dataset(r.grid, fails, [[] for _ in r.device_ids], 60.0, 20.0)


def test_a_model_trained_with_pooled_features_scores_with_the_features_it_was_trained_on(tmp_path):
    ds = _synth_dataset(tmp_path, devices=12)
    result = M.train(ds, F.FeatureSpec(n_slots=3), estimators=["logistic_regression"], pooled=True)
    spec = result.model.spec
    assert spec.pooled_scale and "pool:z_max_6" in F.feature_names(spec)
    x = F.compute(ds.grid, spec, result.test.dev, result.test.step)
    assert np.allclose(x, result.test_x, equal_nan=True)


def test_training_fits_the_flat_slots_from_the_grids_flags_and_scores_with_them(tmp_path):
    from predict import csvio
    from tests.predict import synth

    readings, failures = synth.write_history(tmp_path)
    r = csvio.read_readings(readings)
    fails = csvio.read_failures(failures, r)
    csvio.with_resets(r, fails)
    flat = np.zeros(r.grid.time.shape, dtype=np.uint8)
    flat[:, ::10] = 0b001  # slot 0 flat in a tenth of the steps: a sensor that sticks now and then
    flat[:, ::2] |= 0b100  # slot 2 flat in half of them: constant by nature
    r.grid.flat = flat
    ds = M.build_dataset(r.grid, fails, [[] for _ in r.device_ids], 60.0, 20.0)
    result = M.train(ds, F.FeatureSpec(n_slots=3), estimators=["logistic_regression"])
    spec = result.model.spec
    assert spec.flat_slots and all(bits == 0b011 for bits in spec.flat_slots)
    x = F.compute(ds.grid, spec, result.test.dev, result.test.step)
    assert np.allclose(x, result.test_x, equal_nan=True)


def test_an_early_episode_that_lasts_into_the_catch_window_counts_for_the_job_precision_only():
    ds = dataset(300, [150.0])
    ev = M.alert_events(ds, scores(300, [130, 133, 136, 139]), 0.5)  # one episode from 20 ahead (W 12)
    assert (ev["alerts"], ev["true_alerts"], ev["early_alerts"], ev["early_held_alerts"]) == (1, 0, 1, 1)
    assert ev["precision"] == 0.0 and ev["job_precision"] == 1.0
    assert ev["recall"] == 1.0 and ev["median_lead"] == 11.0  # the first alert in [138, 148]


def test_an_early_episode_that_ends_before_the_catch_window_is_false_for_the_job_precision_too():
    ds = dataset(300, [150.0])
    ev = M.alert_events(ds, scores(300, [120, 123, 126]), 0.5)  # 30 to 24 ahead; the window is 12 to 2
    assert (ev["alerts"], ev["early_held_alerts"]) == (1, 0)
    assert ev["job_precision"] == 0.0 and ev["recall"] == 0.0


def test_an_episode_on_a_device_that_never_fails_is_false_for_both_precisions():
    ds = dataset(300, [])
    ev = M.alert_events(ds, scores(300, [50, 51]), 0.5)
    assert ev["precision"] == 0.0 and ev["job_precision"] == 0.0


class _Recorder:
    """Estimator double: remembers the devices (column 0) it was fitted on and refuses to score them."""

    def fit(self, x, y, sample_weight=None):
        self.seen = set(x[:, 0].astype(int))
        return self

    def predict_proba(self, x):
        assert not self.seen & set(x[:, 0].astype(int)), "scored a device it was fitted on"
        return np.column_stack([np.zeros(len(x)), np.ones(len(x))])


def test_out_of_fold_scores_every_sample_by_a_model_that_never_saw_its_device(monkeypatch):
    n_dev, n = 12, 40
    grid = F.Grid(device_ids=np.arange(100, 100 + n_dev), values=np.ones((n_dev, n, 1)),
                  time=np.tile(np.arange(n, dtype=float), (n_dev, 1)), counts=np.zeros((n_dev, n, 0)),
                  resets=[np.array([30.0])] * n_dev, installed=np.zeros(n_dev), group=np.zeros(n_dev, dtype=int))
    dev, step = np.repeat(np.arange(n_dev), n), np.tile(np.arange(n), n_dev)
    labels = F.make_labels(grid, dev, step, [F.Failure(i, 30.0) for i in range(n_dev)], [[]] * n_dev, 12.0, 2.0)
    ds = M.Dataset(grid, dev, step, grid.time[dev, step], labels, [F.Failure(i, 30.0) for i in range(n_dev)], 12.0)
    monkeypatch.setattr(M, "candidates", lambda seed=0: {"recorder": _Recorder})
    scores = M.out_of_fold(ds, dev[:, None].astype(float), "recorder", folds=3)
    assert not np.isnan(scores).any()


def test_the_estimator_is_chosen_by_out_of_fold_recall_at_the_target_precision():
    selection = {"a": {"recall": 0.6, "pr_auc": 0.5}, "b": {"recall": 0.4, "pr_auc": 0.7}}
    assert M.choose_estimator({"a": 0.5, "b": 0.9}, selection) == "a"


def test_equal_out_of_fold_recall_is_decided_by_out_of_fold_pr_auc():
    selection = {"a": {"recall": 0.0, "pr_auc": 0.5}, "b": {"recall": 0.0, "pr_auc": 0.7}}
    assert M.choose_estimator({"a": 0.9, "b": 0.5}, selection) == "b"


def test_without_out_of_fold_figures_the_best_validation_pr_auc_is_chosen():
    assert M.choose_estimator({"a": 0.5, "b": 0.9}, {}) == "b"


def test_folds_are_not_used_when_one_would_lack_a_failure():
    ds = dataset(400, [150.0, 350.0])  # one device: every fold but its own is empty
    ds.labels = F.make_labels(ds.grid, ds.dev, ds.step, ds.failures, [[]], 12.0, 2.0)
    assert not M.folds_usable(ds, 4)


def test_training_with_several_candidates_compares_them_out_of_fold(tmp_path):
    ds = _synth_dataset(tmp_path)
    result = M.train(ds, F.FeatureSpec(n_slots=3), estimators=["logistic_regression", "random_forest"],
                     folds=3)
    assert set(result.selection) == {"logistic_regression", "random_forest"}
    assert result.model.estimator == M.choose_estimator(result.comparison, result.selection)
    oof = result.oof_scores[result.model.estimator]
    assert oof.shape == result.train.dev.shape and not np.isnan(oof).any()
    assert result.model.metrics["selection"] == result.selection
    assert result.comparison == {n: fig["pr_auc"] for n, fig in result.selection.items()}


def test_with_folds_the_threshold_reaches_the_target_on_the_calibrated_out_of_fold_scores(tmp_path):
    result = M.train(_synth_dataset(tmp_path), F.FeatureSpec(n_slots=3), estimators=["logistic_regression"],
                     folds=3)
    clf = result.model.classifier
    assert isinstance(clf, M.CrossFitCalibrated)
    oof = clf.calibrate(result.oof_scores["logistic_regression"])
    assert result.model.threshold == M.choose_threshold(result.train, oof, 0.8)


class _RowCounter:
    """Estimator double: records how many rows each instance was fitted on."""

    fitted: list[int] = []

    def fit(self, x, y, sample_weight=None):
        _RowCounter.fitted.append(len(x))
        self.classes_ = np.array([False, True])
        return self

    def predict_proba(self, x):
        p = np.clip(np.nan_to_num(x[:, -1], nan=0.5), 0.01, 0.99)
        return np.column_stack([1 - p, p])


def test_with_folds_the_chosen_estimator_is_fitted_on_every_training_device(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "candidates", lambda seed=0: {"counter": _RowCounter})
    monkeypatch.setattr(_RowCounter, "fitted", [])
    result = M.train(_synth_dataset(tmp_path), F.FeatureSpec(n_slots=3), folds=3)
    rows = result.train.labels.keep & M.fit_sample(result.train)
    assert _RowCounter.fitted[-1] == rows.sum()  # folds (each with its inner fits), then all


def test_without_folds_a_validation_share_calibrates_and_sets_the_threshold(tmp_path):
    from sklearn.calibration import CalibratedClassifierCV

    result = M.train(_synth_dataset(tmp_path), F.FeatureSpec(n_slots=3), estimators=["logistic_regression"],
                     folds=1)
    assert isinstance(result.model.classifier, CalibratedClassifierCV)
    assert not result.selection and not result.oof_scores
    assert set(result.comparison) == {"logistic_regression"}


def test_cross_fit_calibration_recovers_the_sigmoid_of_the_log_odds():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, 40000)
    y = rng.random(len(raw)) < M.expit(2.0 * M.logit(raw) - 1.0)
    cal = M.CrossFitCalibrated(None).fit_scores(raw, y)
    assert cal.slope == pytest.approx(2.0, abs=0.1) and cal.intercept == pytest.approx(-1.0, abs=0.1)


def test_cross_fit_calibration_maps_the_estimators_probabilities():
    est = _RowCounter().fit(np.zeros((1, 1)), np.zeros(1))
    cal = M.CrossFitCalibrated(est, slope=2.0, intercept=-1.0)
    x = np.array([[0.2], [0.5], [0.9]])
    q = M.expit(2.0 * M.logit(x[:, 0]) - 1.0)
    assert np.allclose(cal.predict_proba(x), np.column_stack([1 - q, q]))
    assert list(cal.predict(x)) == [False, False, True]


def test_a_threshold_that_only_the_top_few_scores_pass_is_still_found():
    n = 20000
    ds = dataset(n, [10000.0])
    s = np.random.default_rng(0).uniform(0.0, 0.5, n)  # noise alerts at any threshold up to 0.5
    s[9990:9995] = 0.9  # five samples (0.025 %) in the failure's catch window
    th = M.choose_threshold(ds, s, target_precision=0.8)
    assert 0.5 < th <= 0.9
    assert M.alert_events(ds, s, th)["precision"] == 1.0


def test_training_with_folds_saves_the_three_plots(tmp_path):
    from predict import pipeline

    run = pipeline.fit(_synth_dataset(tmp_path), F.FeatureSpec(n_slots=3), progress=M._quiet,
                       plot_dir=tmp_path / "plots", estimators=["logistic_regression"])
    assert isinstance(run.result.model.classifier, M.CrossFitCalibrated)
    assert sorted(p.name for p in run.plot_paths) == ["feature_importance.png", "lead_times.png", "pr_curve.png"]
    assert all(p.stat().st_size > 1000 for p in run.plot_paths)
