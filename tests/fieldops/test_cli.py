"""The ``fieldops`` entry point: argument types shared by the commands, and how errors are reported."""

import argparse

import pytest

from fieldops.cli import int_between, main, positive_float


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
