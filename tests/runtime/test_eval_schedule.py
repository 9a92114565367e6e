"""Evaluation as users expect it: few evaluations by default, the final one on the whole set,
metrics named by where they come from, a progress bar, and a warning when there is nothing to
evaluate on."""
from __future__ import annotations

import json
import math

import pytest
import torch
from runtime.rtkit import section

from nndsl.runtime.data import batches_per_epoch, synthetic_regression
from nndsl.runtime.evaluation import (EVAL_SHARE, MAX_EVALUATIONS, eval_interval, evaluate,
                                      metrics_without_eval)
from nndsl.runtime.train import fit

CPU = torch.device("cpu")
DATA = "data = synthetic_regression(n={n}, features=3, noise=0.1, seed=1)\n"
EVAL = 'eval = synthetic_regression(n={n}, features=3, noise=0.1, seed=1, part="test")\n'


def _evaluations(every: int, total: int) -> list[int]:
    """The steps a run of ``total`` steps evaluates at (each multiple of ``every``, and the last)."""
    return sorted({s for s in range(every, total + 1, every)} | {total})


@pytest.mark.parametrize("mode, total, per_epoch, eval_size, batch, eval_batches", [
    ("steps", 10, 938, 10_000, 64, None),      # the run: 10 steps, 157 evaluation batches
    ("steps", 5_001, 938, 10_000, 64, None),   # long enough for a few
    ("steps", 997, 50, 300, 16, 2),            # eval_batches makes evaluations cheap: the count cap binds
    ("steps", 7, 3, None, 8, None),            # no evaluation set: train_loss lines only
    ("epochs", 4 * 938, 938, 10_000, 64, None),
    ("epochs", 37 * 11, 11, 50, 5, None),      # many short epochs
    ("epochs", 3 * 5, 5, 10_000, 4, None),     # a small training set, a huge evaluation set
])
def test_default_schedule_keeps_evaluation_a_small_share(mode, total, per_epoch, eval_size, batch, eval_batches):
    body = f"{mode} = {total if mode == 'steps' else total // per_epoch}\nbatch = {batch}\n"
    cfg = section(body + (f"eval_batches = {eval_batches}\n" if eval_batches else ""))
    every = eval_interval(cfg, total, per_epoch, eval_size)
    at = _evaluations(every, total)
    assert 1 <= len(at) <= MAX_EVALUATIONS, at
    if mode == "epochs":  # at epoch ends only, never more than once per epoch
        assert every % per_epoch == 0, (every, per_epoch)
    if eval_size is not None and len(at) > 1:  # more than the final one only when they are cheap
        cost = eval_batches or batches_per_epoch(eval_size, batch)
        assert len(at) * cost / 3 <= EVAL_SHARE * total, (at, cost, total)
    units = total if mode == "steps" else total // per_epoch
    if eval_size is None or (eval_batches or batches_per_epoch(eval_size, batch)) / 3 * min(units, 10) <= 0.05 * total:
        assert len(at) > min(units, MAX_EVALUATIONS) // 2, at  # cheap evaluations: about as many as the cap allows


@pytest.mark.parametrize("mode", ["steps", "epochs"])
def test_eval_every_given_is_kept(mode):
    cfg = section(f"{mode} = 6\neval_every = 2\n")
    per_epoch = 7
    total = 6 if mode == "steps" else 6 * per_epoch
    assert eval_interval(cfg, total, per_epoch, 10_000) == (2 if mode == "steps" else 2 * per_epoch)


def _run(tmp_path, body: str, **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    lines: list[str] = []
    out = fit(model, section(body), tmp_path / "run", device="cpu", progress=False, log=lines.append, **kw)
    return model, out, lines


def test_final_metrics_cover_the_whole_set_even_with_eval_batches(tmp_path):
    n_eval, batch = 203, 10  # 21 batches, the last one short
    body = DATA.format(n=97) + EVAL.format(n=n_eval) + (
        "loss = mse\noptimizer = sgd(lr=0.05)\nsteps = 9\neval_every = 3\neval_batches = 2\n"
        f"batch = {batch}\nmetrics = [mse, loss, r2]\n")
    model, out, _ = _run(tmp_path, body)
    cfg = section(body)
    src = synthetic_regression(n=n_eval, features=3, noise=0.1, seed=1, part="test")
    with torch.no_grad():  # by hand, in float64
        pred = model.double()(src.x.double())
    want = ((pred - src.y.double().reshape(pred.shape)) ** 2).mean().item()
    assert out["final"]["val_mse"] == pytest.approx(want, rel=1e-6)
    assert out["final"]["val_loss"] == pytest.approx(want, rel=1e-5)
    # the intermediate evaluations used 2 batches (20 examples), not the whole set
    model.float()
    sample = evaluate(model, src, cfg, torch.nn.functional.mse_loss, False, CPU, limit=2)["val_mse"]
    whole = evaluate(model, src, cfg, torch.nn.functional.mse_loss, False, CPU)["val_mse"]
    assert whole == pytest.approx(want, rel=1e-6) and sample != pytest.approx(whole, rel=1e-6)
    assert [h["step"] for h in out["history"]] == [3, 6, 9]


def test_metric_names_say_where_they_come_from(tmp_path):
    body = DATA.format(n=40) + EVAL.format(n=30) + (
        "loss = mse\nsteps = 4\neval_every = 2\nbatch = 8\nmetrics = [loss, mae]\nbest = mae\n")
    _, out, lines = _run(tmp_path, body)
    keys = {"train_loss", "val_loss", "val_mae"}
    assert set(out["final"]) == keys
    assert all(keys <= set(h) and not {"loss", "mae"} & set(h) for h in out["history"]), out["history"]
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(recorded["final"]) == keys and all(keys <= set(h) for h in recorded["history"])
    logged = [line for line in lines if line.startswith("step ")]
    assert len(logged) == 2 and all(all(f"{k} " in line for k in keys) for line in logged), logged
    best = min(out["history"], key=lambda h: h["val_mae"])["step"]  # best = mae ranks by val_mae
    assert any(p.name == f"best-step-{best:09d}" for p in (tmp_path / "run" / "checkpoints").iterdir())


def test_short_run_evaluates_once_at_the_end(tmp_path):
    body = DATA.format(n=50) + EVAL.format(n=4000) + "loss = mse\nsteps = 5\nbatch = 4\nmetrics = [mse]\n"
    _, out, _ = _run(tmp_path, body)
    assert [h["step"] for h in out["history"]] == [5]
    assert math.isfinite(out["final"]["val_mse"])


def test_evaluation_shows_a_progress_bar(capsys):
    cfg = section(DATA.format(n=10) + EVAL.format(n=23) + "loss = mse\nbatch = 4\nmetrics = [mse]\n")
    src = synthetic_regression(n=23, features=3, noise=0.1, seed=1, part="test")
    evaluate(torch.nn.Linear(3, 1), src, cfg, torch.nn.functional.mse_loss, False, CPU, progress=True)
    err = capsys.readouterr().err
    assert "eval" in err and "/6 " in err and "batch" in err, err  # 23 examples in batches of 4
    evaluate(torch.nn.Linear(3, 1), src, cfg, torch.nn.functional.mse_loss, False, CPU, progress=False)
    assert capsys.readouterr().err == ""


def test_metrics_without_an_evaluation_set_warn(tmp_path):
    body = DATA.format(n=20) + "loss = mse\nsteps = 2\nbatch = 5\nmetrics = [mse, r2]\n"
    _, out, lines = _run(tmp_path, body)
    warned = [line for line in lines if "warning" in line]
    assert len(warned) == 1 and "t.nn:" in warned[0] and "eval = " in warned[0] and "mse, r2" in warned[0], lines
    assert set(out["final"]) == {"train_loss"}
    # no warning when there is an evaluation set, or when metrics are not asked for
    assert metrics_without_eval(section(body + EVAL.format(n=10))) is None
    assert metrics_without_eval(section(DATA.format(n=20) + "steps = 2\n")) is None
