"""The predict command line names the model candidates without loading scikit-learn."""

import subprocess
import sys

from predict import commands
from predict.model import candidates


def test_the_estimator_choices_are_the_model_candidates() -> None:
    assert commands.ESTIMATORS == tuple(sorted(candidates()))


def test_building_the_command_line_does_not_load_scikit_learn() -> None:
    code = ("import sys; from fieldops import cli; cli.build_parser(); "
            "print(sorted(m for m in ('sklearn', 'matplotlib', 'ortools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
