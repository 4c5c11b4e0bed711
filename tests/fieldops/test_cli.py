"""The ``fieldops`` entry point: argument types shared by the commands, and how errors are reported."""

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fieldops.cli import aware_datetime, int_between, main, positive_float
from tests.conftest import _with_dbname

REPO = Path(__file__).resolve().parents[2]


def test_unknown_log_level_option_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--log-level", "bogus", "db", "status"])
    assert exit_.value.code == 2
    assert "--log-level" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "-inf", "x"])
def test_positive_float_accepts_only_finite_numbers_above_zero(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float()(text)


def test_positive_float_refuses_numbers_above_its_bound():
    with pytest.raises(argparse.ArgumentTypeError, match="at most 10"):
        positive_float(10)("11")


@pytest.mark.parametrize("text", ["0", "11", "1.5", "x"])
def test_int_between_refuses_numbers_outside_its_range(text):
    with pytest.raises(argparse.ArgumentTypeError):
        int_between(1, 10)(text)


def test_aware_datetime_refuses_a_time_without_utc_offset():
    with pytest.raises(argparse.ArgumentTypeError, match=r"give a UTC offset, e\.g\. 2026-01-01T00:00:00\+00:00"):
        aware_datetime("2025-01-01T00:00:00")


def test_aware_datetime_gives_the_time_in_utc():
    assert aware_datetime("2025-01-01T02:00:00+02:00") == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_aware_datetime_refuses_what_is_no_time_in_utc(text):
    with pytest.raises(argparse.ArgumentTypeError):
        aware_datetime(text)


def test_installed_at_without_utc_offset_is_refused(capsys):
    err = _refused(["devices", "provision", "p-1", "--installed-at", "2025-01-01T00:00:00"], capsys)
    assert "--installed-at" in err and "UTC offset" in err


def _refused(argv, capsys) -> str:
    """Run ``fieldops ARGV``, expect argparse to refuse it (exit 2), return stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["jobs", "process-events", "--follow", "--interval-s", "0"],
    ["jobs", "process-events", "--follow", "--interval-s", "-1"],
    ["jobs", "process-events", "--follow", "--interval-s", "nan"],
    ["dispatch", "loop", "--interval", "-1"],
    ["dispatch", "loop", "--interval", "nan"],
    ["dispatch", "loop", "--time-limit", "-1"],
    ["dispatch", "loop", "--position-every", "0"],
    ["simulate", "technicians", "--position-every-s", "0"],
    ["simulate", "fleet", "--report-every-s", "0"],
])
def test_loop_intervals_must_be_finite_and_positive(argv, capsys):
    assert argv[-2] in _refused(argv, capsys)


@pytest.mark.parametrize("argv", [
    ["predict", "train", "--horizon", "0"],
    ["predict", "train", "--horizon", "nan"],
    ["predict", "train", "--days", "-3"],
    ["predict", "train", "--days", "1e9"],
    ["predict", "train", "--every", "0"],
    ["predict", "evaluate", "--version", "0"],
    ["predict", "score-loop", "--interval", "inf"],
    ["predict", "score-loop", "--batch", "-1"],
    ["predict", "score-loop", "--threads", "two"],
])
def test_prediction_numbers_that_cannot_be_meant_are_refused(argv, capsys):
    assert argv[-2] in _refused(argv, capsys)


@pytest.mark.parametrize("limit", ["0", "-1", "nan", "0.01", "1e9"])
def test_plan_search_time_limit_must_be_a_positive_bounded_number(limit, capsys):
    assert "--time-limit" in _refused(["dispatch", "plan", "--time-limit", limit], capsys)


@pytest.mark.parametrize("days", ["0", "-5", "1000000"])
def test_kpi_period_must_be_at_least_a_day_and_bounded(days, capsys):
    assert "--days" in _refused(["jobs", "kpis", "--days", days], capsys)


@pytest.mark.parametrize("argv", [
    ["simulate", "backfill", "--days", "0"],
    ["simulate", "backfill", "--days", "nan"],
    ["simulate", "backfill", "--days", "1e9"],
    ["simulate", "backfill", "--resolution-s", "0"],
    ["simulate", "backfill", "--warning-h", "0"],
    ["simulate", "backfill", "--warning-h", "nan"],
    ["simulate", "backfill", "--devices", "-2"],
    ["simulate", "seed-data", "--devices", "0"],
    ["simulate", "fleet", "--batch", "0"],
    ["simulate", "fleet", "--window", "0"],
    ["simulate", "fleet", "--devices", "0"],
])
def test_simulator_sizes_must_be_positive_and_bounded(argv, capsys):
    assert argv[-2] in _refused(argv, capsys)


@pytest.mark.parametrize("argv", [
    ["jobs", "show", "99999999999"],
    ["jobs", "list", "--site-id", "0"],
    ["dispatch", "override", "lock", "-4"],
])
def test_ids_outside_the_integer_columns_are_refused(argv, capsys):
    _refused(argv, capsys)


@pytest.mark.parametrize("argv", [
    ["up", "--speed", "nan"],
    ["up", "--speed", "0"],
    ["up", "--history-days", "-1"],
    ["up", "--devices", "0"],
    ["up", "--reading-interval-s", "0"],
    ["up", "--web-port", "99999"],
])
def test_demo_options_are_checked_before_anything_starts(argv, capsys):
    assert argv[-2] in _refused(argv, capsys)


def _unreachable(monkeypatch, capsys, url, argv) -> str:
    """Run ``fieldops ARGV`` against database ``url``; expect exit 2 and return stderr's one line."""
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", url)
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line


@pytest.mark.parametrize("argv", [["db", "status"], ["db", "migrate"], ["jobs", "list"], ["dispatch", "plan"]])
def test_malformed_database_url_is_one_clear_line(argv, monkeypatch, capsys):
    line = _unreachable(monkeypatch, capsys, "garbage", argv)
    assert line.startswith("fieldops: cannot connect to the database: ") and "garbage" in line


def test_unreachable_database_server_is_one_clear_line(monkeypatch, capsys):
    line = _unreachable(monkeypatch, capsys, "postgresql://127.0.0.1:1/fieldops", ["db", "status"])
    assert line.startswith("fieldops: cannot connect to the database: ") and "refused" in line


def test_missing_database_is_one_clear_line(pg_admin_url, monkeypatch, capsys):
    line = _unreachable(monkeypatch, capsys, _with_dbname(pg_admin_url, "no_such_db"), ["jobs", "kpis"])
    assert line.startswith("fieldops: cannot connect to the database: ") and "no_such_db" in line


def _reorder_raising(monkeypatch, db_url, exc):
    from fieldops.service import parts

    def refuse(conn):
        raise exc

    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setattr(parts, "reorder_suggestions", refuse)
    return main(["jobs", "reorder"])


def test_a_refused_service_request_is_reported_with_exit_2(db_url, monkeypatch, capsys):
    from fieldops.service.errors import ServiceError

    assert _reorder_raising(monkeypatch, db_url, ServiceError("sku", "unknown part")) == 2
    assert capsys.readouterr().err == "fieldops jobs: sku: unknown part\n"


def test_an_unexpected_error_still_shows_its_traceback(db_url, monkeypatch):
    with pytest.raises(ZeroDivisionError):
        _reorder_raising(monkeypatch, db_url, ZeroDivisionError("a defect"))


@pytest.mark.parametrize("argv", [["db", "status"], ["jobs", "list"], ["web-user", "demo", "--password", "long-enough"]])
def test_missing_database_url_is_a_configuration_error_with_exit_2(argv, monkeypatch, capsys):
    monkeypatch.delenv("FIELDOPS_DATABASE_URL", raising=False)
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("fieldops: configuration error: FIELDOPS_DATABASE_URL is not set")


def test_up_with_a_malformed_database_url_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIELDOPS_DATA_DIR", str(tmp_path))
    line = _unreachable(monkeypatch, capsys, "garbage", ["up", "--prepare-only"])
    assert line.startswith("fieldops: cannot connect to the database: ") and "garbage" in line


def _python_m_fieldops(*argv: str) -> subprocess.CompletedProcess:
    """``python -m fieldops ARGV`` in a child process, importing this checkout's code."""
    return subprocess.run([sys.executable, "-m", "fieldops", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_python_m_fieldops_shows_the_help():
    done = _python_m_fieldops("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fieldops")


def test_python_m_fieldops_passes_the_exit_code_through():
    done = _python_m_fieldops("web-user", "dora")  # no --role: main returns 2 before touching a database
    assert done.returncode == 2
    assert "--role is required" in done.stderr
