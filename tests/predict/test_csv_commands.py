"""Cold start from CSV: train, rul and score through the ``fieldops`` command."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fieldops.cli import main
from predict import pipeline
from tests.predict.synth import write_history


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("csv")
    readings, failures = write_history(directory, devices=16, steps=500)
    out = directory / "model.joblib"
    return directory, readings, failures, out


def run(capsys, monkeypatch, tmp_path, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("FIELDOPS_DATA_DIR", str(tmp_path))
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train(capsys, monkeypatch, tmp_path, readings, failures, out) -> dict:
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "train", "--telemetry", str(readings),
                            "--failures", str(failures), "--out", str(out))
    assert code == 0, err
    return json.loads(stdout)


def refused(capsys, monkeypatch, tmp_path, readings, failures, *argv: str) -> str:
    """Train from ``readings`` and ``failures``, expect exit 2, return stderr."""
    code, _, err = run(capsys, monkeypatch, tmp_path, "train", "--telemetry", str(readings), "--failures",
                       str(failures), "--out", str(tmp_path / "m.joblib"), *argv)
    assert code == 2
    return err


def test_train_writes_a_model_and_reports_hold_out_metrics(trained, capsys, monkeypatch, tmp_path):
    _, readings, failures, out = trained
    metrics = train(capsys, monkeypatch, tmp_path, readings, failures, out)
    assert out.exists()
    assert {"pr_auc", "precision", "recall", "median_lead", "baseline"} <= set(metrics)
    assert (tmp_path / "predict" / "plots" / "pr_curve.png").exists()


def test_rul_prints_one_row_per_device_in_ts_units(trained, capsys, monkeypatch, tmp_path):
    _, readings, failures, out = trained
    if not out.exists():
        train(capsys, monkeypatch, tmp_path, readings, failures, out)
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "rul", "--model", str(out), "--telemetry", str(readings))
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(stdout)))
    assert rows[0] == ["device_id", "rul"]
    assert sorted(r[0] for r in rows[1:]) == sorted(f"dev-{d}" for d in range(16))
    assert all(float(r[1]) >= 0 for r in rows[1:])


def test_score_works_with_other_columns_missing_or_extra(trained, capsys, monkeypatch, tmp_path):
    _, readings, failures, out = trained
    if not out.exists():
        train(capsys, monkeypatch, tmp_path, readings, failures, out)
    other = tmp_path / "other.csv"
    other.write_text("device_id,ts,vib,unrelated\nx,1,1.0,7\nx,2,1.1,7\ny,5,3.5,\n")  # no temp, short
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "score", "--model", str(out), "--telemetry", str(other))
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(stdout)))
    assert rows[0] == ["device_id", "p_fail"] and [r[0] for r in rows[1:]] == ["x", "y"]
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows[1:])


def test_iso_timestamps_are_accepted(tmp_path, capsys, monkeypatch):
    readings, failures = write_history(tmp_path, devices=16, steps=500)
    iso_r, iso_f = tmp_path / "iso_r.csv", tmp_path / "iso_f.csv"
    for src, dst in ((readings, iso_r), (failures, iso_f)):
        rows = list(csv.reader(src.open()))
        with dst.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(rows[0])
            for r in rows[1:]:
                r[1] = f"2026-01-{1 + int(r[1]) // 24:02d}T{int(r[1]) % 24:02d}:00:00Z"
                w.writerow(r)
    metrics = train(capsys, monkeypatch, tmp_path, iso_r, iso_f, tmp_path / "iso.joblib")
    assert metrics["pr_auc"] >= 0


@pytest.mark.parametrize(("content", "message"), [
    ("device,ts,x\na,1,2\n", "no 'device_id' column"),
    ("device_id,ts,x\na,yesterday,2\n", "readings.csv:2: ts 'yesterday'"),
    ("device_id,ts,x\na,1,2,3\n", "readings.csv:2: 4 fields"),
    ("", "empty file"),
])
def test_malformed_readings_get_a_clear_error(tmp_path, capsys, monkeypatch, content, message):
    bad = tmp_path / "readings.csv"
    bad.write_text(content)
    failures = tmp_path / "failures.csv"
    failures.write_text("device_id,ts\na,1\n")
    err = refused(capsys, monkeypatch, tmp_path, bad, failures)
    assert message in err


def test_failures_of_unknown_devices_are_an_error(trained, tmp_path, capsys, monkeypatch):
    _, readings, _, _ = trained
    failures = tmp_path / "failures.csv"
    failures.write_text("device_id,ts\nnobody,5\n")
    err = refused(capsys, monkeypatch, tmp_path, readings, failures)
    assert "'nobody' has no readings" in err


def test_scoring_a_file_without_any_of_the_models_metrics_is_an_error(trained, capsys, monkeypatch, tmp_path):
    _, readings, failures, out = trained
    if not out.exists():
        train(capsys, monkeypatch, tmp_path, readings, failures, out)
    other = tmp_path / "other.csv"
    other.write_text("device_id,ts,pressure\nx,1,1.0\nx,2,1.1\n")
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "score", "--model", str(out), "--telemetry", str(other))
    assert code == 2 and stdout == ""
    assert "none of the model's metrics is a column (the model reads temp, vib" in err and "found pressure" in err


def test_scoring_a_file_that_lacks_some_of_the_models_metrics_warns(trained, capsys, monkeypatch, tmp_path):
    _, readings, failures, out = trained
    if not out.exists():
        train(capsys, monkeypatch, tmp_path, readings, failures, out)
    other = tmp_path / "other.csv"
    other.write_text("device_id,ts,vib\nx,1,1.0\nx,2,1.1\n")
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "rul", "--model", str(out), "--telemetry", str(other))
    assert code == 0, err
    assert stdout.splitlines()[1].startswith("x,")
    assert f"WARNING predict.pipeline: {other} has no column for temp, const: scored as not reported" in err


def test_a_column_without_numbers_is_left_out_of_training_and_named(tmp_path, capsys, monkeypatch):
    readings, failures = write_history(tmp_path, devices=16, steps=500)
    with_text = tmp_path / "with_text.csv"
    rows = list(csv.reader(readings.open()))
    with with_text.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*rows[0], "Type [class]"])
        w.writerows([*r, "L"] for r in rows[1:])
    out = tmp_path / "text.joblib"
    code, _, err = run(capsys, monkeypatch, tmp_path, "train", "--telemetry", str(with_text),
                       "--failures", str(failures), "--out", str(out))
    assert code == 0, err
    assert "metrics temp, vib, const (ignored, no numbers: Type [class])" in err


@pytest.mark.parametrize("horizon", [0.0, -5.0, float("nan"), float("inf")])
def test_a_horizon_that_is_not_a_positive_number_is_refused_by_training(trained, tmp_path, horizon):
    _, readings, failures, _ = trained
    with pytest.raises(ValueError, match=f"the horizon must be a positive number, not {horizon:g}"):
        pipeline.train_csv(readings, failures, tmp_path / "m.joblib", horizon=horizon)


def test_a_horizon_longer_than_the_histories_leaves_no_healthy_samples_and_is_refused(trained, tmp_path, capsys,
                                                                                      monkeypatch):
    _, readings, failures, _ = trained
    err = refused(capsys, monkeypatch, tmp_path, readings, failures, "--horizon=1e6")
    assert "too few healthy samples to train: 0 samples" in err


def test_readings_without_a_metric_column_are_refused(trained, tmp_path, capsys, monkeypatch):
    _, _, failures, _ = trained
    bare = tmp_path / "readings.csv"
    bare.write_text("device_id,ts,note\ndev-1,1,ok\ndev-1,2,ok\n")
    err = refused(capsys, monkeypatch, tmp_path, bare, failures)
    assert "readings.csv: no metric column with a number besides device_id and ts" in err


def test_failures_outside_the_readings_are_named_as_the_likely_cause(trained, tmp_path, capsys, monkeypatch):
    _, readings, failures, _ = trained
    later = tmp_path / "failures.csv"
    rows = list(csv.reader(failures.open()))
    with later.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *([d, str(float(t) * 3600), m] for d, t, m in rows[1:])])
    err = refused(capsys, monkeypatch, tmp_path, readings, later)
    assert "no training sample lies within the horizon" in err and "in the same unit?" in err


def test_failures_on_one_device_only_say_why_they_are_too_few(trained, tmp_path, capsys, monkeypatch):
    _, readings, failures, _ = trained
    rows = list(csv.reader(failures.open()))
    one = tmp_path / "failures.csv"
    with one.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *(r for r in rows[1:] if r[0] == rows[1][0])])
    err = refused(capsys, monkeypatch, tmp_path, readings, one)
    assert "training devices (a model is fitted on some devices and checked on others" in err


@pytest.mark.parametrize("content", [b"hello\n", bytes(range(256)), b"device_id,ts,vib\nx,1,2\n"])
def test_a_file_that_is_not_a_model_is_refused_with_its_name(trained, tmp_path, capsys, monkeypatch, content):
    _, readings, _, _ = trained
    bad = tmp_path / "model.joblib"
    bad.write_bytes(content)
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "score", "--model", str(bad), "--telemetry", str(readings))
    assert code == 2 and stdout == ""
    assert f"{bad}: not a model file written by `fieldops predict train`" in err


@pytest.mark.parametrize(("row", "message"), [
    ("a,nan,2", "readings.csv:2: ts 'nan' is not a finite number"),
    ("a,1e300,2", "readings.csv:2: ts '1e300' is not a finite number"),
    ("a,1,1e39", "readings.csv:2: x '1e39' is out of range"),
])
def test_numbers_out_of_any_range_are_named_with_their_line(tmp_path, capsys, monkeypatch, row, message):
    bad = tmp_path / "readings.csv"
    bad.write_text(f"device_id,ts,x\n{row}\n")
    failures = tmp_path / "failures.csv"
    failures.write_text("device_id,ts\na,1\n")
    err = refused(capsys, monkeypatch, tmp_path, bad, failures)
    assert message in err


def test_an_unwritable_model_path_is_refused_before_training(trained, tmp_path, capsys, monkeypatch):
    _, readings, failures, _ = trained
    code, _, err = run(capsys, monkeypatch, tmp_path, "train", "--telemetry", str(readings), "--failures",
                       str(failures), "--out", str(tmp_path))
    assert code == 2 and f"{tmp_path}: is a directory, not a model file" in err
    assert "features for" not in err


def test_csv_training_compares_only_the_estimators_asked_for(trained, tmp_path, capsys, monkeypatch):
    _, readings, failures, _ = trained
    code, stdout, err = run(capsys, monkeypatch, tmp_path, "train", "--telemetry", str(readings), "--failures",
                            str(failures), "--out", str(tmp_path / "lr.joblib"),
                            "--estimators", "logistic_regression")
    assert code == 0, err
    assert set(json.loads(stdout)["comparison"]) == {"logistic_regression"}
