"""Proactive jobs from predictions, and technicians' findings on them as the next labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fieldops.domain import JobStatus
from fieldops.service import jobs
from predict import data, scorer
from tests import factories
from tests.factories import T0


def prediction(device_id: int, p: float, rul_h: float = 60.0, mode: str = "bearing_wear") -> scorer.Prediction:
    return scorer.Prediction(device_id, p, rul_h, mode, "vibration_mm_s up 40% over 7 days", "standard")


def prediction_jobs(db) -> list[tuple]:
    return db.execute("SELECT id, priority, source, failure_mode FROM jobs ORDER BY id").fetchall()


def test_risk_above_threshold_opens_one_job_with_the_modes_skill_parts_and_duration(db):
    dev = factories.device(db)
    opened = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)
    job = jobs.get_job(db, opened[dev.id])
    assert job.source == "prediction" and job.failure_mode == "bearing_wear"
    assert job.required_skills == frozenset({"mechanical"})
    assert [(p.sku, p.quantity) for p in job.required_parts] == [("BRG-1", 1)]
    assert job.estimated_duration_s == 5400
    assert job.windows[0].end == T0 + timedelta(hours=60 - scorer.SAFETY_MARGIN_H)
    assert "vibration_mm_s up 40% over 7 days" in job.explanation


def test_risk_below_threshold_opens_nothing(db):
    dev = factories.device(db)
    assert scorer.open_jobs(db, [prediction(dev.id, 0.3)], threshold=0.5, now=T0) == {}
    assert prediction_jobs(db) == []


def test_repeated_scoring_keeps_one_open_job(db):
    dev = factories.device(db)
    first = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)
    again = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0 + timedelta(minutes=10))
    assert again == first
    assert len(prediction_jobs(db)) == 1


def test_rising_risk_raises_the_priority_of_the_open_job(db):
    dev = factories.device(db)
    first = scorer.open_jobs(db, [prediction(dev.id, 0.6)], threshold=0.5, now=T0)
    assert jobs.get_job(db, first[dev.id]).priority == 3
    scorer.open_jobs(db, [prediction(dev.id, 0.95, rul_h=12)], threshold=0.5, now=T0 + timedelta(hours=1))
    assert [(j[0], j[1]) for j in prediction_jobs(db)] == [(first[dev.id], 1)]


def test_premium_contract_makes_the_job_more_urgent():
    assert scorer.priority_for(0.8, 0.5, "premium", 48) < scorer.priority_for(0.8, 0.5, "standard", 48)


def test_priority_follows_the_margin_above_the_operating_threshold():
    # the same risk is urgent for a model whose threshold is low and routine for one whose is high
    assert scorer.priority_for(0.8, 0.2, "standard", 48) == 2
    assert scorer.priority_for(0.78, 0.75, "standard", 48) == 4


def complete(db, job_id: int, finding: str, at) -> None:
    tech = factories.technician(db)
    jobs.assign(db, job_id, tech.id, at - timedelta(hours=2), now=at - timedelta(hours=3))
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        jobs.transition(db, job_id, status, expected_version=None, actor="ada", now=at - timedelta(hours=1))
    jobs.transition(db, job_id, JobStatus.COMPLETED, expected_version=None, actor="ada", now=at,
                    finding=finding)


def test_a_confirmed_fault_on_a_proactive_job_becomes_a_failure_label(db):
    dev = factories.device(db)
    job_id = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)[dev.id]
    complete(db, job_id, "fault_confirmed", T0 + timedelta(hours=20))
    fleet = data.load(db, T0 - timedelta(days=2), T0 + timedelta(days=2), [dev.id], n_slots=3)
    assert [(f.time, f.mode) for f in fleet.failures] == [(data.hours(T0 + timedelta(hours=20)), "bearing_wear")]
    assert fleet.repairs == [[data.hours(T0 + timedelta(hours=20))]]


def test_no_fault_found_is_a_service_visit_not_a_failure(db):
    dev = factories.device(db)
    job_id = scorer.open_jobs(db, [prediction(dev.id, 0.8)], threshold=0.5, now=T0)[dev.id]
    complete(db, job_id, "no_fault_found", T0 + timedelta(hours=20))
    fleet = data.load(db, T0 - timedelta(days=2), T0 + timedelta(days=2), [dev.id], n_slots=3)
    assert fleet.failures == []
    assert fleet.repairs == [[data.hours(T0 + timedelta(hours=20))]]


def test_the_explanation_names_the_metric_that_moved_most_in_dispatcher_words():
    from predict import features as F

    spec = F.FeatureSpec(windows=(6, 168), extreme_windows=(6,), n_slots=2, n_counts=1)
    names = F.feature_names(spec)
    x = np.full(len(names), np.nan)
    values = {"m0:base_mean": 50.0, "m0:mean_168": 51.0, "m0:z_168": 0.5, "m0:trend_168": 0.2,
              "m1:base_mean": 2.0, "m1:mean_168": 2.8, "m1:z_168": 6.0, "m1:trend_168": 4.0,
              "c0:count_24": 3.0}
    for k, v in values.items():
        x[names.index(k)] = v
    text = scorer.explain(x, names, ["oil_temp_c", "vibration_mm_s"], spec)
    assert text.startswith("vibration_mm_s up 40% over 7 days (2.8 vs 2 normal for this unit)")
    assert "3 error events in 24 h" in text


def reporting_pumps(db, n: int, apart: float = 0.0) -> list:
    """``n`` pumps with 33 hours of readings; pump ``i`` vibrates ``apart * i`` more than pump 0."""
    from fieldops.db.repo.telemetry import TelemetryWriter

    devices = [factories.device(db, serial=f"pump-{i}") for i in range(n)]
    db.commit()
    TelemetryWriter(db).write([(d.id, T0 - timedelta(minutes=10 * k), None, [60.0, 3.0 + apart * i + 0.01 * k, 20.0])
                               for i, d in enumerate(devices) for k in range(1, 200)])
    db.commit()
    return devices


def two_reporting_pumps_and_a_model(db):
    """Two pumps with 33 hours of readings and a model that always predicts risk 0.75, RUL 30 h."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    from predict import features as F
    from predict.model import FailureModel

    reporting_pumps(db, 2)
    x, y = np.zeros((4, 1)), np.array([1, 1, 1, 0])
    return FailureModel(
        spec=F.FeatureSpec(n_slots=3, n_counts=3), classifier=DummyClassifier(strategy="prior").fit(x, y),
        regressor=DummyRegressor(strategy="constant", constant=30.0).fit(x, [30.0] * 4),
        mode_classifier=None, modes=["bearing_wear"], threshold=0.5, horizon=72.0, rul_cap=144.0,
        estimator="dummy", metrics={"pr_auc": 0.5})


def test_a_scoring_pass_stores_predictions_and_opens_each_job_once(db):
    from predict import registry

    model = two_reporting_pumps_and_a_model(db)
    version, _ = registry.register(db, model, params={}, train_start=None, train_end=None)
    first = scorer.score_pass(db, model, version, T0)
    second = scorer.score_pass(db, model, version, T0 + timedelta(minutes=10))
    assert (first.devices, first.alerts) == (2, 2) and (second.devices, second.alerts) == (2, 2)
    assert db.execute("SELECT count(*), min(p_fail), max(rul_h) FROM predictions").fetchone() == (4, 0.75, 30.0)
    assert [(j[2], j[3]) for j in prediction_jobs(db)] == [("prediction", "bearing_wear")] * 2


@pytest.mark.parametrize("rolling", [False, True])
def test_a_pass_scores_only_the_devices_with_a_reading_in_the_last_two_days(db, rolling):
    from predict import registry

    model = two_reporting_pumps_and_a_model(db)  # their last readings: T0 - 10 min
    factories.device(db, serial="never-reported")
    db.commit()
    version, _ = registry.register(db, model, params={}, train_start=None, train_end=None)
    windows = {} if rolling else None  # kept across passes: the second reads only new hours
    hours = [p.devices for p in (scorer.score_pass(db, model, version, T0 + timedelta(hours=h), open_proactive=False,
                                                   windows=windows) for h in (47, 48.5))]
    assert hours == [2, 0]
    scored = {r[0] for r in db.execute("SELECT device_id FROM predictions").fetchall()}
    assert scored == {r[0] for r in db.execute("SELECT id FROM devices WHERE serial LIKE 'pump-%'").fetchall()}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_pass_reading_the_next_batch_while_scoring_stores_what_each_batch_scores_alone(db, threads):
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LinearRegression

    from predict import features as F
    from predict import registry
    from predict.model import FailureModel

    pumps = reporting_pumps(db, 3, apart=1.0)
    spec = F.FeatureSpec(n_slots=3, n_counts=3)
    x = np.array([[1.0], [5.0]])  # RUL = the 6 h mean vibration, different for each pump
    model = FailureModel(spec, DummyClassifier(strategy="prior").fit(x, [0, 1]),
                         LinearRegression().fit(x, [1.0, 5.0]), None, [], threshold=0.9, horizon=72.0,
                         rul_cap=144.0, estimator="linear", columns=np.array([F.feature_names(spec).index("m1:mean_6")]))
    version, _ = registry.register(db, model, params={}, train_start=None, train_end=None)
    # three batches, overlapped: read ahead, scored ``threads`` at a time, stored in batch order
    assert scorer.score_pass(db, model, version, T0, batch=1, compute_threads=threads).devices == 3
    stored = db.execute("SELECT device_id, rul_h FROM predictions ORDER BY id").fetchall()
    alone = {p.device_id: p.rul_h for d in pumps for p in scorer.score_devices(db, model, T0, [d.id])}
    assert dict(stored) == alone and len(set(alone.values())) == 3
    assert [d for d, _ in stored] == sorted(d.id for d in pumps)


def test_a_batch_whose_devices_all_went_silent_scores_nothing_and_the_pass_goes_on(db):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from predict import features as F
    from predict import registry
    from predict.model import FailureModel

    silent = factories.device(db, serial="silent")  # the first batch: no readings at all
    db.commit()
    pumps = reporting_pumps(db, 2)
    spec = F.FeatureSpec(n_slots=3, n_counts=3)
    x = np.array([[1.0], [5.0]])  # scikit-learn's estimators refuse an empty batch
    model = FailureModel(spec, LogisticRegression().fit(x, [0, 1]), LinearRegression().fit(x, [1.0, 5.0]),
                         None, [], threshold=2.0, horizon=72.0, rul_cap=144.0, estimator="linear",
                         columns=np.array([F.feature_names(spec).index("m1:mean_6")]))
    version, _ = registry.register(db, model, params={}, train_start=None, train_end=None)
    assert scorer.score_pass(db, model, version, T0, batch=1).devices == 2
    stored = {r[0] for r in db.execute("SELECT device_id FROM predictions").fetchall()}
    assert stored == {p.id for p in pumps} and silent.id not in stored


@pytest.mark.parametrize("arg", [{"batch": 0}, {"compute_threads": 0}])
def test_a_pass_refuses_empty_batches_or_no_compute_thread(db, arg):
    model = two_reporting_pumps_and_a_model(db)
    with pytest.raises(ValueError, match="must be at least 1"):
        scorer.score_pass(db, model, 1, T0, **arg)


def test_stored_predictions_keep_tabs_backslashes_and_newlines_in_their_text(db):
    from predict import registry

    model = two_reporting_pumps_and_a_model(db)
    version, _ = registry.register(db, model, params={}, train_start=None, train_end=None)
    dev = db.execute("SELECT min(id) FROM devices").fetchone()[0]
    text = "vib\tup\\down\nnext\r"
    batch = scorer.Scores(np.array([dev]), np.array([0.8]), np.array([12.5]), np.array(["a\tb"], dtype=object),
                          np.array([text], dtype=object), ["standard"])
    scorer.store(db, batch, version, T0, {dev: None})
    assert db.execute("SELECT failure_mode, explanation, job_id FROM predictions").fetchone() == ("a\tb", text, None)


def test_a_model_stored_before_the_residual_and_pooled_features_still_scores(db):
    import io

    from predict import registry
    from predict.model import FailureModel
    from tests.predict.test_features import OldPickler

    model = two_reporting_pumps_and_a_model(db)
    version, _ = registry.register(db, model, params={}, train_start=None, train_end=None)
    buf = io.BytesIO()
    OldPickler(buf).dump(model)
    old = FailureModel.from_bytes(buf.getvalue())  # how the registry loads an artifact
    assert scorer.score_pass(db, old, version, T0, open_proactive=False).devices == 2
    assert db.execute("SELECT count(*), min(p_fail) FROM predictions").fetchone() == (2, 0.75)


def test_the_grid_holds_the_hourly_means_of_the_rollup(db):
    from fieldops.db.repo.telemetry import TelemetryWriter

    dev = factories.device(db)
    TelemetryWriter(db).write([(dev.id, T0 + timedelta(minutes=10), 1, [1.0, None, 7.0]),
                               (dev.id, T0 + timedelta(minutes=20), 2, [3.0, None, 7.0]),
                               (dev.id, T0 + timedelta(minutes=70), 3, [5.0, 4.0, None])])
    db.commit()
    fleet = data.load(db, T0 - timedelta(hours=1), T0 + timedelta(hours=3), [dev.id], n_slots=3)
    first = fleet.grid.values[0, 1:3]  # the hours starting at T0 and T0 + 1 h
    assert np.array_equal(first, np.array([[2.0, np.nan, 7.0], [5.0, 4.0, np.nan]]), equal_nan=True)
    assert np.isnan(fleet.grid.values[0, [0, 3]]).all()


def test_the_grid_flags_the_slots_whose_readings_did_not_vary_within_the_hour(db):
    from fieldops.db.repo.telemetry import TelemetryWriter

    dev = factories.device(db)
    TelemetryWriter(db).write([(dev.id, T0 + timedelta(minutes=10), 1, [1.0, 4.0, 7.0]),
                               (dev.id, T0 + timedelta(minutes=20), 2, [3.0, 4.0, 7.0]),  # slots 1, 2 flat
                               (dev.id, T0 + timedelta(minutes=70), 3, [5.0, 4.0, 7.0])])  # one reading
    db.commit()
    fleet = data.load(db, T0, T0 + timedelta(hours=2), [dev.id], n_slots=3)
    assert list(fleet.grid.flat[0]) == [0b110, 0]


def test_a_rolling_window_carries_the_flat_flags_of_the_hours_it_keeps(db):
    from fieldops.db.repo.telemetry import TelemetryWriter

    dev = factories.device(db)
    writer = TelemetryWriter(db)

    def readings(first: int, last: int) -> None:  # two per hour; slot 1 sticks in hours 1, 2 and 6
        writer.write([(dev.id, T0 + timedelta(minutes=60 * k + m), 2 * k + m // 30,
                       [1.0 + m, 5.0 if k in (1, 2, 6) else 5.0 + m, 3.0 + m])
                      for k in range(first, last) for m in (10, 40)])
        db.commit()

    readings(0, 5)
    window = data.Window(hours=6, n_slots=3)
    window.fleet(db, T0 + timedelta(hours=4, minutes=50), [dev.id])
    readings(5, 8)
    now = T0 + timedelta(hours=7, minutes=50)
    rolled = window.fleet(db, now, [dev.id]).grid
    full = data.load(db, now - timedelta(hours=6), now, [dev.id], n_slots=3, history=False).grid
    assert np.array_equal(rolled.flat, full.flat)
    # the window starts at 1:50: hour 1 (flagged in the first window) is before it, as in a full read
    assert list(np.flatnonzero(rolled.flat[0])) == [1, 5]  # hours 2 and 6


def test_the_failure_mode_is_named_only_where_the_risk_is_at_least_half_the_threshold():
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LogisticRegression

    from predict import features as F
    from predict.model import FailureModel

    x = np.array([[0.0], [1.0], [2.0], [3.0]] * 5)
    y = np.array([0, 0, 1, 1] * 5)
    clf = LogisticRegression(C=100.0).fit(x, y)
    modes = LogisticRegression().fit(x[y == 1], np.array(["bearing_wear", "oil_leak"] * 5))
    model = FailureModel(F.FeatureSpec(n_slots=1), clf, DummyRegressor().fit(x, y), modes,
                         [str(c) for c in modes.classes_], threshold=0.9, horizon=72.0, rul_cap=144.0,
                         estimator="logistic_regression")
    p, _, mode = model.score(np.array([[0.0], [3.0]]))
    assert p[0] < 0.45 and p[1] >= 0.45
    assert mode[0] == "" and mode[1] in ("bearing_wear", "oil_leak")


def test_the_failure_mode_is_one_the_device_model_has_failed_with():
    from sklearn.dummy import DummyClassifier, DummyRegressor

    from predict import features as F
    from predict.model import FailureModel

    x = np.array([[0.0], [1.0]] * 4)  # column 0 is the device model group
    always_fails = DummyClassifier(strategy="constant", constant=1).fit(x, [0, 1] * 4)
    says_bearing = DummyClassifier(strategy="prior").fit(x, ["bearing_wear"] * 6 + ["oil_leak"] * 2)
    model = FailureModel(F.FeatureSpec(n_slots=1), always_fails, DummyRegressor().fit(x, [1.0] * 8),
                         says_bearing, ["bearing_wear", "oil_leak"], threshold=0.5, horizon=72.0,
                         rul_cap=144.0, estimator="dummy", group_modes={0: ["bearing_wear"], 1: ["oil_leak"]})
    _, _, mode = model.score(np.array([[0.0], [1.0]]))
    assert list(mode) == ["bearing_wear", "oil_leak"]


def test_the_scoring_load_keeps_only_the_last_reset_before_its_window(db):
    from fieldops.db.repo.telemetry import TelemetryWriter

    dev = factories.device(db)
    TelemetryWriter(db).write([(dev.id, T0 + timedelta(minutes=30 + 60 * k), k, [1.0 + k, 2.0, 3.0])
                               for k in range(10)])
    for hours_before, code in ((40, "F1"), (20, "F2"), (-5, "F3")):  # two before the window, one inside
        db.execute("INSERT INTO device_events (device_id, ts, code, severity) VALUES (%s, %s, %s, 'fault')",
                   (dev.id, T0 - timedelta(hours=hours_before), code))
    db.commit()
    start, end = T0, T0 + timedelta(hours=10)
    full = data.load(db, start, end, [dev.id], n_slots=3)
    scoring = data.load(db, start, end, [dev.id], n_slots=3, history=False)
    expected = [data.hours(T0 - timedelta(hours=h)) for h in (20, -5)]
    assert np.allclose(scoring.grid.resets[0], expected)
    assert len(full.grid.resets[0]) == 3


def test_a_rolling_window_reads_only_new_hours_and_gives_the_full_reads_grid(db):
    from fieldops.db.repo.telemetry import TelemetryWriter

    dev = factories.device(db)
    writer = TelemetryWriter(db)

    def readings(first: int, last: int) -> None:
        writer.write([(dev.id, T0 + timedelta(minutes=30 + 60 * k), k, [1.0 + k, 2.0 * k, 3.0])
                      for k in range(first, last)])
        db.commit()

    def fault(at: timedelta, code: str) -> None:
        db.execute("INSERT INTO device_events (device_id, ts, code, severity) VALUES (%s, %s, %s, 'fault')",
                   (dev.id, T0 + at, code))
        db.commit()

    readings(0, 8)
    fault(timedelta(hours=1), "F1")
    window = data.Window(hours=5, n_slots=3)
    window.fleet(db, T0 + timedelta(hours=7, minutes=40), [dev.id])  # the hour under way is partial
    readings(8, 11)
    fault(timedelta(hours=9, minutes=5), "F2")
    now = T0 + timedelta(hours=10, minutes=40)
    rolled = window.fleet(db, now, [dev.id]).grid
    full = data.load(db, now - timedelta(hours=5), now, [dev.id], n_slots=3, history=False).grid
    assert np.array_equal(rolled.values, full.values, equal_nan=True)
    assert np.array_equal(rolled.counts, full.counts) and rolled.counts.sum() == 1
    assert np.array_equal(rolled.time, full.time, equal_nan=True)
    assert np.allclose(rolled.resets[0], full.resets[0])
    assert np.allclose(rolled.resets[0], [data.hours(T0 + timedelta(hours=h)) for h in (1, 9 + 5 / 60)])


@pytest.fixture
def scorer_cli(monkeypatch: pytest.MonkeyPatch, db_url: str, db) -> None:
    """``fieldops`` against this test's database, its clock at T0, with two reporting pumps and
    an active model."""
    from predict import registry

    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_ENV", "test")
    monkeypatch.setenv("FIELDOPS_CLOCK_ANCHOR", f"{datetime.now(UTC).isoformat()}/{T0.isoformat()}")
    registry.register(db, two_reporting_pumps_and_a_model(db), params={}, train_start=None, train_end=None)
    db.commit()


def test_the_score_loop_command_scores_a_pass_in_batches_on_two_threads(db, scorer_cli, capsys):
    from fieldops.cli import main

    assert main(["predict", "score-loop", "--once", "--batch", "1", "--threads", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["devices"] == 2


def test_the_score_loop_command_refuses_an_empty_batch(db, scorer_cli, capsys):
    from fieldops.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["predict", "score-loop", "--once", "--batch", "0"])
    assert exit_.value.code == 2 and "argument --batch" in capsys.readouterr().err
    assert db.execute("SELECT count(*) FROM predictions").fetchone()[0] == 0


def test_the_score_loop_command_fails_a_pass_that_raises_and_stores_nothing(db, scorer_cli, monkeypatch):
    from fieldops.cli import main
    from predict import scorer

    def broken(*args, **kwargs):
        raise ValueError("a batch the model cannot score")

    monkeypatch.setattr(scorer, "score_pass", broken)
    assert main(["predict", "score-loop", "--once"]) == 1
    assert db.execute("SELECT count(*) FROM predictions").fetchone()[0] == 0


# ---------------------------------------------------------------- the data rate against training


def test_the_data_rate_is_the_median_readings_of_a_device_in_an_hour(db):
    reporting_pumps(db, 2)  # a reading every 10 minutes
    assert data.readings_per_hour(db, T0 - timedelta(hours=24), T0) == 6.0
    assert data.readings_per_hour(db, T0 + timedelta(hours=1), T0 + timedelta(hours=2)) is None


@pytest.mark.parametrize(("trained", "live", "factor"), [
    (6.0, 360.0, 60.0), (360.0, 6.0, 60.0), (6.0, 12.0, None), (6.0, 3.0, None), (None, 6.0, None), (6.0, None, None)])
def test_a_data_rate_more_than_twice_or_half_the_trainings_is_a_mismatch(trained, live, factor):
    assert scorer.rate_mismatch(trained, live) == factor


@pytest.mark.parametrize(("trained", "warned"), [(360.0, True), (6.0, False)])
def test_the_score_loop_warns_when_the_fleet_reports_at_another_rate_than_the_model_learned_from(
        db, scorer_cli, capsys, trained, warned):
    from fieldops.cli import main
    from predict import registry

    model = registry.active(db)[1]
    model.readings_per_hour = trained
    registry.register(db, model, params={}, train_start=None, train_end=None)  # as good: it replaces
    db.commit()
    assert main(["predict", "score-loop", "--once"]) == 0
    err = capsys.readouterr().err  # the command's log
    assert ("the fleet reports 6 readings per device-hour, the model was trained on 360" in err) is warned


def test_a_model_stored_before_the_data_rate_was_recorded_loads_without_one():
    import copyreg
    import io
    import pickle

    from predict.model import FailureModel

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, FailureModel):
                _, values = obj.__getstate__()
                return copyreg.__newobj__, (FailureModel,), (None, {k: v for k, v in values.items()
                                                                   if k != "readings_per_hour"})
            return NotImplemented

    model = FailureModel(spec=None, classifier=None, regressor=None, mode_classifier=None, modes=[], threshold=0.5,
                         horizon=72.0, rul_cap=144.0, estimator="dummy", readings_per_hour=6.0)
    buf = io.BytesIO()
    Pickler(buf).dump(model)
    old = FailureModel.from_bytes(buf.getvalue())
    assert old.readings_per_hour is None and old.threshold == 0.5 and old.group_modes == {}
