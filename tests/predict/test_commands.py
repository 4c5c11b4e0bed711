"""The predict command line names the model candidates without loading scikit-learn."""

import subprocess
import sys

from fieldops import cli
from predict import commands
from predict.model import candidates


def test_the_estimator_choices_are_the_model_candidates() -> None:
    assert commands.ESTIMATORS == tuple(sorted(candidates()))


def test_building_the_command_line_does_not_load_scikit_learn() -> None:
    code = ("import sys; from fieldops import cli; cli.build_parser(); "
            "print(sorted(m for m in ('sklearn', 'matplotlib', 'ortools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sensible_numbers_pass_the_command_line() -> None:
    args = cli.build_parser().parse_args(["predict", "train", "--horizon", "48", "--days", "30", "--every", "1"])
    assert (args.horizon, args.days, args.every) == (48.0, 30.0, 1)
