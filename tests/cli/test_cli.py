"""The nndsl command through click's CliRunner: the happy paths, and every error path without a traceback."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import nndsl
from nndsl.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = """\
model Tiny(x: f32[B, 5], hidden: int = 4) -> f32[B, 1] {
    return linear(relu(linear(x, hidden)), 1)
}

train {
    data      = synthetic_regression(n=90, features=5, noise=0.01, seed=1)
    eval      = synthetic_regression(n=30, features=5, noise=0.01, seed=1, part="test")
    loss      = mse
    optimizer = adam(lr=1e-2)
    epochs    = 2
    batch     = 16
    metrics   = [mse, loss]
    seed      = 3
}
"""


def _write(tmp_path, text=TINY, name="tiny.nn"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _invoke(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env or {"NNDSL_DEBUG": ""})
    assert "Traceback" not in result.output, result.output
    return result


def test_run_trains_writes_and_loads(tmp_path):
    src = _write(tmp_path)
    out = tmp_path / "run"
    res = _invoke("run", src, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "final: train_loss" in res.output and "val_mse" in res.output and "epoch 2/2" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["history"][-1]["step"] == 2 * math.ceil(90 / 16)
    model = nndsl.load(out)
    _, state = nndsl.runtime.checkpoint.load_weights(out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # the same command again gives the same run: the seed fixes the initial weights too
    res2 = _invoke("run", src, "--out", tmp_path / "again", "--no-progress")
    assert res2.exit_code == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["final"] == metrics["final"]


def test_run_overrides_and_resume(tmp_path):
    src = _write(tmp_path)
    out = tmp_path / "r"
    res = _invoke("run", src, "--out", out, "--no-progress", "--epochs", "1", "--set", "batch=50",
                  "--set", "hidden=3", "--lr", "0.02")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "run.json").read_text())
    assert meta["hyperparams"]["hidden"] == 3 and meta["train"]["batch"] == 50
    assert meta["train"]["optimizer"]["lr"] == 0.02 and meta["train"]["epochs"] == 1
    res = _invoke("run", src, "--out", out, "--no-progress", "--epochs", "3", "--set", "batch=50",
                  "--set", "hidden=3", "--lr", "0.02", "--resume")
    assert res.exit_code == 0, res.output
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4, 6], history
    res = _invoke("run", src, "--out", out, "--no-progress", "--epochs", "4", "--set", "hidden=5", "--resume")
    assert res.exit_code == 1 and "does not fit this model" in res.output, res.output


def test_check_and_compile(tmp_path):
    src = _write(tmp_path)
    res = _invoke("check", src, "--set", "hidden=7")
    assert res.exit_code == 0, res.output
    assert 'Model "Tiny"' in res.output and "Total params: 50" in res.output  # 5*7+7 + 7+1
    assert "train: 2 epochs, batch 16" in res.output
    py = _invoke("compile", src, "--emit", "python")
    assert py.exit_code == 0 and "def forward(self, v0):" in py.output
    ir = _invoke("compile", src, "--emit", "ir")
    assert ir.exit_code == 0 and "graph Tiny" in ir.output


@pytest.mark.parametrize("args,code,needle", [
    (["run", "{dir}/missing.nn"], 1, "no such file"),
    (["check", "{file}", "--set", "hidden"], 2, "expected NAME=VALUE"),
    (["check", "{file}", "--set", "=3"], 2, "expected NAME=VALUE"),
    (["run", "{file}", "--epochs", "1", "--steps", "3"], 2, "not both"),
    (["run", "{file}", "--epochs", "many"], 2, "many"),
    (["run", "{file}", "--epochs", "0", "--out", "{dir}/o"], 1, "--epochs: expected a value > 0"),
    (["check", "{file}", "--set", "hiden=3"], 1, "did you mean 'hidden'"),
    (["compile", "{file}", "--emit", "asm"], 2, "asm"),
    (["check", "{file}", "--model", "Nope"], 1, "Nope"),
])
def test_usage_and_config_errors(tmp_path, args, code, needle):
    src = _write(tmp_path)
    res = _invoke(*[a.format(file=src, dir=tmp_path) for a in args])
    assert res.exit_code == code, f"exit {res.exit_code}, expected {code}: {res.output}"
    assert needle in res.output, res.output


def test_located_errors_from_the_file(tmp_path):
    bad_key = _write(tmp_path, TINY.replace("metrics   =", "metrix    ="), "k.nn")
    res = _invoke("check", bad_key)
    assert res.exit_code == 1 and f"{bad_key}:12:5: config error: unknown train setting 'metrix'" in res.output
    assert "did you mean 'metrics'?" in res.output and "^^^^^^" in res.output
    syntax = _write(tmp_path, TINY.replace("return linear", "return = linear"), "s.nn")
    res = _invoke("run", syntax)
    assert res.exit_code == 1 and f"{syntax}:2:" in res.output and "syntax error" in res.output


def test_missing_data_and_missing_train_section(tmp_path, monkeypatch):
    monkeypatch.delenv("NNDSL_DATA", raising=False)
    missing = _write(tmp_path, TINY.replace('synthetic_regression(n=90, features=5, noise=0.01, seed=1)',
                                            'npz("nowhere/d.npz")'), "m.nn")
    res = _invoke("run", missing, "--out", tmp_path / "o", "--no-progress")
    assert res.exit_code == 1 and "data error" in res.output and "never downloads" in res.output
    assert f"{missing}:6:" in res.output, res.output
    notrain = _write(tmp_path, TINY.split("train {")[0], "n.nn")
    res = _invoke("run", notrain)
    assert res.exit_code == 1 and "no train section" in res.output


def test_data_that_does_not_fit_the_model(tmp_path):
    wrong = _write(tmp_path, TINY.replace("features=5", "features=6"), "w.nn")
    res = _invoke("run", wrong, "--out", tmp_path / "o", "--no-progress")
    assert res.exit_code == 1 and "do not fit the model" in res.output and f"{wrong}:6:" in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_cuda(tmp_path):
    res = _invoke("run", _write(tmp_path), "--device", "cuda", "--out", tmp_path / "o")
    assert res.exit_code == 1 and "CUDA is not available" in res.output


def test_internal_errors_are_one_line_unless_debugging(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(nndsl.compiler, "check", boom)  # check never lowers: it calls compiler.check
    res = _invoke("check", _write(tmp_path))
    assert res.exit_code == 1
    assert "internal error: ZeroDivisionError: oops" in res.output and "NNDSL_DEBUG=1" in res.output
    debug = CliRunner().invoke(main, ["check", str(tmp_path / "tiny.nn")], env={"NNDSL_DEBUG": "1"})
    assert isinstance(debug.exception, ZeroDivisionError)
