"""Every example, end to end at reduced size: `nndsl check` prints a correct summary, and
`nndsl run` trains a few steps, evaluates, writes its run folder, and `nndsl.load` reads it back."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nndsl
from nndsl.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# (file, model, extra CLI arguments): small sizes so each run takes seconds on a CPU
CASES = [
    ("linear_regression.nn", None, []),
    ("mnist_mlp.nn", None, []),
    ("mnist_mlp_adam.nn", None, []),
    ("mnist_cnn.nn", None, []),
    ("mnist_lstm.nn", None, ["--set", "hidden=16"]),
    ("gpt_shakespeare.nn", None, ["--set", "L=2", "--set", "heads=2", "--set", "D=32", "--set", "ctx=16"]),
    ("spoken_letters.nn", "SpokenLetters", []),
    ("spoken_letters.nn", "SpokenLettersConv", ["--set", "width=8"]),
    ("autoencoder.nn", None, ["--set", "width=8"]),
    ("mnist_two_heads.nn", None, ["--set", "hidden=16"]),
    ("llama_shakespeare.nn", None, ["--set", "L=1", "--set", "heads=2", "--set", "D=32", "--set", "hidden=40"]),
]


@pytest.fixture()
def spoken_letters_data(tmp_path, monkeypatch):
    """A small stand-in for spoken_letters.npz with the real keys, shapes and dtypes."""
    root = tmp_path / "data"
    (root / "spoken-letters").mkdir(parents=True)
    rng = np.random.default_rng()
    arrays = {}
    for split, n in (("train", 52), ("test", 26)):
        arrays[f"x_{split}"] = rng.integers(-3000, 3000, size=(n, 16000), dtype=np.int16)
        arrays[f"y_{split}"] = (np.arange(n) % 26).astype(np.uint8)
    np.savez_compressed(root / "spoken-letters" / "spoken_letters.npz", **arrays)
    monkeypatch.setenv("NNDSL_DATA", str(root))
    return root


def _args(model, extra):
    return (["--model", model] if model else []) + extra


@pytest.mark.parametrize("file,model,extra", CASES, ids=[f"{c[0]}:{c[1] or ''}" for c in CASES])
def test_check_prints_a_summary_with_the_true_parameter_count(file, model, extra, spoken_letters_data):
    result = CliRunner().invoke(main, ["check", str(EXAMPLES / file), *_args(model, extra)])
    assert result.exit_code == 0, result.output
    sets = dict(a.split("=") for a in extra[1::2]) if extra else {}
    module = nndsl.compile(EXAMPLES / file, model=model, **{k: int(v) for k, v in sets.items()})
    total = sum(p.numel() for p in module.parameters())
    assert f"Total params: {total:,}" in result.output, result.output
    assert "Output shape" in result.output


@pytest.mark.parametrize("file,model,extra", CASES, ids=[f"{c[0]}:{c[1] or ''}" for c in CASES])
def test_run_trains_a_few_steps_and_loads_back(file, model, extra, tmp_path, spoken_letters_data):
    out = tmp_path / "run"
    args = ["run", str(EXAMPLES / file), "--out", str(out), "--steps", "4", "--batch", "8",
            "--set", "eval_batches=2", "--set", "eval_every=4", "--no-progress", *_args(model, extra)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"], metrics
    assert all(math.isfinite(v) for v in metrics["final"].values()), metrics
    assert metrics["samples_per_second"] > 0 and metrics["history"]
    newest = nndsl.runtime.checkpoint.listing(out)[-1].path
    assert (newest / "model.safetensors").is_file() and (newest / "state.pt").is_file()
    trained = nndsl.load(out)
    from safetensors.torch import load_file

    saved = load_file(str(newest / "model.safetensors"))
    state = trained.state_dict()
    assert set(saved) == set(state), (sorted(saved), sorted(state))
    for k, v in saved.items():
        assert torch.equal(state[k], v), f"{k} differs after nndsl.load"


def test_linear_regression_full_run_recovers_the_generating_weights(tmp_path):
    """The whole example (20 epochs of SGD, under a second) must find w and b of the data."""
    from nndsl.runtime.data.arrays import synthetic_regression

    out = tmp_path / "lr"
    result = CliRunner().invoke(main, ["run", str(EXAMPLES / "linear_regression.nn"), "--out", str(out),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["val_r2"] >= 0.999, metrics["final"]
    state = nndsl.load(out).state_dict()
    data = synthetic_regression(n=2000, features=10, noise=0.01, seed=0)
    err_w = (state["linear.weight"][0] - data.true_w).abs().max().item()
    err_b = abs(state["linear.bias"][0].item() - data.true_b)
    assert err_w < 1e-2 and err_b < 1e-2, (err_w, err_b)
