"""A bad ``--set NAME=VALUE`` is reported as the --set it came from, for train settings and for
model hyperparameters alike; ``check`` warns about metrics without an evaluation set."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from nndsl.cli import main

TINY = """\
model Tiny(x: f32[B, 5], hidden: int = 4) -> f32[B, 1] {
    return linear(relu(linear(x, hidden)), 1)
}

train {
    data    = synthetic_regression(n=90, features=5)
    loss    = mse
    steps   = 3
    metrics = [mse]
}
"""


def _check(tmp_path, *args):
    path = tmp_path / "tiny.nn"
    path.write_text(TINY)
    return CliRunner().invoke(main, ["check", str(path), *args])


@pytest.mark.parametrize("setting, expected", [
    ("batch=abc", 'expected an integer, got the string "abc"'),   # a train setting
    ("steps=-2", "expected a value > 0"),
    ("lr=fast", "expected a number"),                              # the optimizer's lr
    ("hidden=abc", "hyperparameter 'hidden' is an int"),           # a model hyperparameter
    ("x=3", "'x' is an input of Tiny, not a hyperparameter"),
    ("hiden=3", "Tiny has no hyperparameter 'hiden'"),
])
def test_a_bad_set_value_names_the_set(tmp_path, setting, expected):
    result = _check(tmp_path, "--set", setting)
    assert result.exit_code == 1, result.output
    first = result.output.splitlines()[0]
    assert f"config error: --set {setting}: {expected}" in first, result.output
    assert "Traceback" not in result.output


def test_a_command_line_option_keeps_its_own_name(tmp_path):
    path = tmp_path / "tiny.nn"
    path.write_text(TINY)
    result = CliRunner().invoke(main, ["run", str(path), "--steps", "0", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "--steps: expected a value > 0" in result.output, result.output
    assert "--set" not in result.output


def test_check_warns_about_metrics_without_an_evaluation_set(tmp_path):
    result = _check(tmp_path)
    assert result.exit_code == 0, result.output
    assert "tiny.nn:9:5: warning: metrics [mse] are computed on the evaluation set" in result.output, result.output
    path = tmp_path / "tiny.nn"
    path.write_text(TINY.replace("    metrics = [mse]\n", ""))
    assert "warning" not in CliRunner().invoke(main, ["check", str(path)]).output
