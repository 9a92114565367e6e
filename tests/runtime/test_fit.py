"""fit(): it learns, it resumes exactly, it writes its files atomically, it reports mismatches clearly."""
from __future__ import annotations

import json
import math

import pytest
import torch
from runtime.rtkit import section

from nndsl.errors import NndslConfigError, NndslDataError
from nndsl.runtime import checkpoint as ckpt
from nndsl.runtime.config import Spec
from nndsl.runtime.data import synthetic_regression
from nndsl.runtime.rundir import read_meta
from nndsl.runtime.train import Schedule, build_optimizer, evaluate, fit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead (and contention on shared CI)
    yield
    torch.set_num_threads(n)


REGRESSION = """
    data      = synthetic_regression(n=301, features=10, noise=0.01, seed=3)
    eval      = synthetic_regression(n=77, features=10, noise=0.01, seed=3, part="test")
    loss      = mse
    optimizer = sgd(lr=0.05, momentum=0.5)
    epochs    = 4
    batch     = 16
    metrics   = [mse, r2, loss]
"""


def test_fit_learns_linear_regression_and_writes_its_files(tmp_path):
    cfg = section(REGRESSION)
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    src = synthetic_regression(n=77, features=10, noise=0.01, seed=3, part="test")
    before = evaluate(model, src, cfg, torch.nn.functional.mse_loss, False, torch.device("cpu"))["val_mse"]
    out = fit(model, cfg, tmp_path / "run", device="cpu", progress=False, model_meta={"model": "Lin"},
              log=lambda s: None)
    after = out["final"]["val_mse"]
    assert after < 1e-3 * before, f"mse {before} -> {after}"
    assert out["final"]["val_r2"] > 0.999 and out["final"]["val_loss"] == pytest.approx(after, rel=1e-5)
    torch.testing.assert_close(model.weight.detach()[0], src.true_w, atol=0.02, rtol=0)
    assert abs(model.bias.item() - src.true_b) < 0.02
    assert [h["epoch"] for h in out["history"]] == [1.0, 2.0, 3.0, 4.0]
    assert out["history"][-1]["step"] == 4 * math.ceil(301 / 16)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == [".lock", "checkpoints", "config.json", "log.csv", "metrics.json", "run.json", "tensorboard",
                     "train.nn"], files  # no source.nn: the model came without source
    # every epoch checkpointed, the newest 2 kept; the best (by mse) is the last epoch's
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best-step-000000076", "step-000000057", "step-000000076"], names
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) == {"final", "history", "samples_per_second", "seconds"} and metrics["samples_per_second"] > 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["model"] == "Lin" and meta["train"]["optimizer"]["name"] == "sgd"
    where, state = ckpt.load_weights(tmp_path / "run")
    assert where.parent.name == "step-000000076"
    assert torch.equal(state["weight"], model.weight.detach())


class CharModel(torch.nn.Module):
    """Embedding -> dropout -> linear; raises ``fail`` on the ``fail_at``-th training forward."""

    def __init__(self, vocab: int, fail_at: int = 0, fail: type = RuntimeError):
        super().__init__()
        self.emb, self.drop, self.out = torch.nn.Embedding(vocab, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, vocab)
        self.calls, self.fail_at, self.fail = 0, fail_at, fail

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.fail("stop here")
        return self.out(self.drop(self.emb(x)))


def _fresh(cls, *args, **kw):
    torch.manual_seed(123)
    return cls(*args, **kw)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after resuming"


def test_resume_in_step_mode_continues_exactly(tmp_path):
    (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    body = f"""
    data = text("{tmp_path / 't.txt'}", context=9)
    eval = text("{tmp_path / 't.txt'}", context=9, part="val")
    optimizer = adamw(lr=1e-2)
    schedule = cosine(warmup=2, min_lr=1e-3)
    steps = 7
    batch = 5
    eval_every = 2
    checkpoint_every = 3
    metrics = [loss, perplexity]
    seed = 4
    """
    cfg = section(body)
    whole = _fresh(CharModel, 28)
    ref = fit(whole, cfg, tmp_path / "a", device="cpu", progress=False, log=lambda s: None)
    broken = _fresh(CharModel, 28, fail_at=5)  # fails during step 5; the last checkpoint is at step 3
    with pytest.raises(RuntimeError, match="stop here"):
        fit(broken, section(body), tmp_path / "b", device="cpu", progress=False, log=lambda s: None)
    assert [c.step for c in ckpt.listing(tmp_path / "b") if not c.best] == [3]
    resumed = _fresh(CharModel, 28)
    out = fit(resumed, section(body), tmp_path / "b", device="cpu", resume=True, progress=False, log=lambda s: None)
    _assert_same_weights(whole, resumed)
    assert [h["step"] for h in out["history"]] == [2, 4, 6, 7]
    assert [h["lr"] for h in out["history"]] == [h["lr"] for h in ref["history"]]
    assert out["final"] == ref["final"]


def test_interrupt_mid_epoch_saves_and_resume_matches(tmp_path):
    body = REGRESSION.replace("epochs    = 4", "epochs    = 2").replace("sgd(lr=0.05, momentum=0.5)",
                                                                       "adam(lr=1e-2)")
    def layers():
        return torch.nn.Linear(10, 6), torch.nn.Dropout(0.2), torch.nn.Linear(6, 1)

    whole = _fresh(lambda: torch.nn.Sequential(*layers()))
    fit(whole, section(body), tmp_path / "a", device="cpu", progress=False, log=lambda s: None)

    class Stop(torch.nn.Sequential):
        calls = 0

        def forward(self, x):
            Stop.calls += self.training
            if Stop.calls == 27:  # the 8th batch of epoch 2 (19 batches per epoch)
                raise KeyboardInterrupt
            return super().forward(x)

    stopped = _fresh(lambda: Stop(*layers()))
    messages = []
    with pytest.raises(KeyboardInterrupt):
        fit(stopped, section(body), tmp_path / "b", device="cpu", progress=False, log=messages.append)
    assert "interrupted at step 26" in messages[-1]
    resumed = torch.nn.Sequential(*layers())  # any init: the checkpoint's weights replace it
    fit(resumed, section(body), tmp_path / "b", device="cpu", resume=True, progress=False, log=lambda s: None)
    _assert_same_weights(whole, resumed)


def test_schedules():
    def lrs(spec, total=10, per_epoch=3, step_mode=False):
        s = Schedule(spec, 1.0, total, per_epoch, step_mode)
        return [s(i) for i in range(total)]

    cos = lrs(Spec("cosine", {"warmup": 2, "min_lr": 0.1}), total=12)
    assert cos[:2] == [1 / 3, 2 / 3] and cos[2] == 1.0
    assert cos[7] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert min(cos) > 0.1 and cos[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))
    # epoch mode: milestones count epochs (3 steps each)
    assert lrs(Spec("multistep", {"milestones": [1, 3], "gamma": 0.5, "warmup": 0})) == \
        [1, 1, 1, .5, .5, .5, .5, .5, .5, .25]
    assert lrs(Spec("step", {"every": 2, "gamma": 0.1, "warmup": 0}), step_mode=True)[:6] == \
        pytest.approx([1, 1, .1, .1, .01, .01])
    assert lrs(Spec("constant", {"warmup": 3}), total=5) == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_weight_decay_and_penalties_spare_biases(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model, Spec("adamw", {"lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.3}))
    decays = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {(3, 4): 0.3, (3,): 0.0}
    results = []
    for l2 in (0.0, 5.0):
        torch.manual_seed(0)
        lin = torch.nn.Linear(10, 1)
        body = REGRESSION.replace("epochs    = 4", f"steps = 1\n    l2 = {l2}\n    l1 = {l2 / 10}")
        fit(lin, section(body), None, device="cpu", progress=False, log=lambda s: None)
        results.append((lin.weight.detach().clone(), lin.bias.detach().clone()))
    (w0, b0), (w1, b1) = results
    assert torch.equal(b0, b1), "l1/l2 changed the bias"
    assert not torch.allclose(w0, w1), "l1/l2 did not change the weights"


def test_divergence_is_reported(tmp_path):
    body = REGRESSION.replace("sgd(lr=0.05, momentum=0.5)", "sgd(lr=1e6)")
    with pytest.raises(NndslConfigError, match="the loss became (nan|inf)") as info:
        fit(torch.nn.Linear(10, 1), section(body), None, device="cpu", progress=False, log=lambda s: None)
    assert "lower the learning rate" in info.value.hint and info.value.span is not None


def test_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(NndslDataError, match="nothing to resume"):
        fit(torch.nn.Linear(10, 1), section(REGRESSION), tmp_path, device="cpu", resume=True, progress=False)
    with pytest.raises(NndslDataError, match="not an nndsl run folder"):
        read_meta(tmp_path)
