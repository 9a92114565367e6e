"""Gradient accumulation: k micro-batches give the gradient of the one full batch.

Each micro-batch's mean loss is weighted by its share of the global batch (``accumulate.py``);
the classic mistake, dividing every micro-batch's loss by k, is wrong as soon as the micro-batches
are unequal, and a test below shows it would be caught.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nndsl import compiler
from nndsl.runtime.accumulate import micro_batches
from nndsl.runtime.config import train_config
from nndsl.runtime.train import fit


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()


def _grads(net, losses) -> list[torch.Tensor]:
    net.zero_grad()
    sum(losses).backward()
    return [p.grad.clone() for p in net.parameters()]


def _loss(net, b) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(net(b["x"]), b["y"])


@pytest.mark.parametrize("n,k", [(7, 3), (11, 4), (5, 5), (3, 4)])
def test_micro_batches_give_the_full_batch_gradient(n, k):
    net = _net()
    batch = {"x": torch.randn(n, 5, dtype=torch.float64), "y": torch.randint(0, 3, (n,))}
    full = _grads(net, [_loss(net, batch)])
    spare = {f: t[:1] for f, t in batch.items()}
    parts = micro_batches(batch, k, n, 1, spare)
    assert len(parts) == k and sum(m for _, m, _ in parts) == n  # k always (a spare, weighted 0, when n < k)
    torch.testing.assert_close(_grads(net, [w * _loss(net, p) for p, _, w in parts]), full, rtol=1e-12, atol=1e-12)
    real = [p for p, m, _ in parts if m]
    if n % len(real):  # unequal micro-batches: 1/k per micro-batch (the classic mistake) is wrong
        naive = _grads(net, [_loss(net, p) / len(real) for p in real])
        assert not all(torch.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(naive, full))


@pytest.mark.parametrize("n,world,k", [(9, 2, 2), (3, 4, 1), (12, 3, 2)])
def test_ranks_and_micro_batches_give_the_global_gradient(n, world, k):
    """Each rank's slice (possibly empty: then a spare example weighted 0), averaged as DDP averages."""
    net = _net()
    batch = {"x": torch.randn(n, 5, dtype=torch.float64), "y": torch.randint(0, 3, (n,))}
    full = _grads(net, [_loss(net, batch)])
    spare = {f: t[:1] for f, t in batch.items()}
    per_rank = []
    for r in range(world):
        mine = {f: torch.tensor_split(t, world)[r] for f, t in batch.items()}
        per_rank.append(_grads(net, [w * _loss(net, p) for p, _, w in micro_batches(mine, k, n, world, spare)]))
    averaged = [sum(g) / world for g in zip(*per_rank)]
    torch.testing.assert_close(averaged, full, rtol=1e-12, atol=1e-12)


CLASSIFIER = """\
model C(x: f32[B, 6]) -> f32[B, 3] {
    return linear(tanh(linear(x, 9)), 3)
}

train {
    data      = npz("d.npz", x="x", y="y")
    loss      = cross_entropy
    optimizer = sgd(lr=0.2, momentum=0.5)
    epochs    = 2
    batch     = 8
    seed      = 4
}
"""


def test_fit_with_accumulation_trains_the_run_without(tmp_path):
    """29 examples in batches of 8 (the last one 5), cut into 3 micro-batches: the compiled
    objective's loss, weighted, must train the same weights as whole batches."""
    rng = np.random.default_rng()
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(29, 6)).astype(np.float32), y=rng.integers(0, 3, 29))
    (tmp_path / "c.nn").write_text(CLASSIFIER)
    runs = []
    for k in (1, 3):
        torch.manual_seed(0)
        built = compiler.build(tmp_path / "c.nn", backend="torch")
        assert built.module.nndsl_objective is not None  # the fused loss path
        cfg = train_config(built.train, built.hyperparams, tmp_path, {"accumulate": k})
        out = fit(built.module, cfg, None, device="cpu", progress=False, log=lambda s: None)
        runs.append((built.module.state_dict(), out["history"][-1]["train_loss"]))
    (w1, loss1), (w3, loss3) = runs
    for name in w1:
        torch.testing.assert_close(w3[name], w1[name], rtol=1e-5, atol=1e-6)
    assert loss3 == pytest.approx(loss1, rel=1e-5)
