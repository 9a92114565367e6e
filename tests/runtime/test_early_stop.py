"""Early stopping: `early_stop = patience(N, metric=...)` ends a run after N evaluations without
improvement, says why, keeps the best checkpoint by that metric, and stays stopped on resume."""
from __future__ import annotations

import json

import pytest
import torch
from runtime.rtkit import section, source_line

from nndsl.errors import NndslConfigError
from nndsl.runtime import checkpoint as ckpt
from nndsl.runtime.config import Spec
from nndsl.runtime.early_stop import EarlyStop
from nndsl.runtime.saver import best_metric
from nndsl.runtime.train import fit


def test_the_rule_parses_and_ranks_by_its_metric():
    cfg = section('early_stop = patience(3, metric="accuracy")\nmetrics = [loss, accuracy]\n'
                  'eval = synthetic_regression(n=10)\n')
    assert cfg.early_stop == Spec("patience", {"evaluations": 3, "metric": "accuracy"}, cfg.early_stop.span)
    assert best_metric(cfg, has_eval=True) == ("val_accuracy", 1.0)  # the best checkpoint follows it
    plain = section("early_stop = patience(evaluations=2)\nbest = \"-mse\"\n")
    assert EarlyStop(plain, has_eval=True).metric == ("val_mse", -1.0)  # metric "best": best's
    assert EarlyStop(section("epochs = 1\n"), has_eval=False).update({"train_loss": 1.0}) is None  # unset: never


@pytest.mark.parametrize("body,needle,words", [
    ("early_stop = patience(0)", "patience(0)", "a value > 0"),
    ('early_stop = patience(2, metric="acuracy")', "patience(2", "unknown metric 'acuracy'"),
    ('early_stop = patience(2, metric="none")', "patience(2", 'metric "none"'),
    ("early_stop = 3", "early_stop = 3", "expected a rule such as patience(3"),
])
def test_a_bad_rule_is_an_error_at_its_line(body, needle, words):
    with pytest.raises(NndslConfigError) as e:
        section(body)
    assert words in e.value.message and e.value.span.line == source_line(body, needle)


@pytest.mark.parametrize("metric,values,stops_at", [
    ("-loss", [3.0, 2.0, 2.5, 1.9, 2.0, 1.9, 2.1], 6),  # equal is no improvement
    ("accuracy", [0.1, 0.5, 0.4, 0.6, 0.6, 0.5], 6),
    ("-loss", [float("nan"), 1.0, 0.5], None),  # nan never counts as the best
])
def test_it_stops_after_patience_evaluations_without_improvement(metric, values, stops_at):
    stop = EarlyStop(section(f'early_stop = patience(2, metric="{metric}")\nmetrics = [loss, accuracy]\n'
                             'eval = synthetic_regression(n=10)\n'), has_eval=True)
    key = stop.metric[0]
    reasons = [stop.update({key: v}) for v in values]
    first = next((i + 1 for i, r in enumerate(reasons) if r), None)
    assert first == stops_at
    if stops_at:
        assert key in reasons[stops_at - 1] and "2 evaluations" in reasons[stops_at - 1]


# training fits y = x w while the evaluation set is y = -x w: from zero weights val_mse only grows
BODY = """
    data       = synthetic_regression(n=64, features=5, noise=0.0, seed=2)
    eval       = npz("neg.npz", x="x", y="y")
    loss       = mse
    optimizer  = sgd(lr=0.05)
    steps      = 40
    batch      = 16
    eval_every = 1
    metrics    = [mse]
    early_stop = patience(2, metric="-mse")
"""


def test_fit_stops_keeps_the_best_checkpoint_and_stays_stopped(tmp_path):
    import numpy as np
    from nndsl.runtime.data import synthetic_regression

    src = synthetic_regression(n=64, features=5, noise=0.0, seed=2)
    np.savez(tmp_path / "neg.npz", x=src.x.numpy(), y=-src.y.numpy())
    cfg = section(BODY, base_dir=tmp_path)

    def model() -> torch.nn.Module:
        m = torch.nn.Linear(5, 1)
        torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
        return m

    lines: list[str] = []
    out = fit(model(), cfg, tmp_path / "run", device="cpu", progress=False, log=lines.append)
    assert [e["step"] for e in out["history"]] == [1, 2, 3]
    assert out["history"][0]["val_mse"] < out["history"][1]["val_mse"] < out["history"][2]["val_mse"]
    assert any(line.startswith("early stop: val_mse has not improved for 2 evaluations") for line in lines), lines
    names = sorted(c.path.name for c in ckpt.listing(tmp_path / "run"))
    assert names == ["best-step-000000001", "step-000000002", "step-000000003"], names  # keep_last 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][-1]["step"] == 3
    lines.clear()
    again = fit(model(), cfg, tmp_path / "run", device="cpu", resume=True, progress=False, log=lines.append)
    assert len(again["history"]) == 3 and any("stopped early" in line for line in lines), lines
