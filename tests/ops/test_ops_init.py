"""Initializers (backend/init.py) and the inits builtins declare, against PyTorch's own layers.

Under the same seed, initializing a builtin's parameters in declaration order must give exactly
the numbers the PyTorch layer's constructor gives; distribution bounds are checked on their own.
"""
from __future__ import annotations

import math

import pytest
import torch
from ops.opcheck import call, new
from torch import nn

from nndsl.backend.init import INITS, initialize
from nndsl.ir.types import DTYPES


def materialize(g, seed: int) -> dict[str, torch.Tensor]:
    """Initialize every declared parameter in declaration order, as the backend does."""
    torch.manual_seed(seed)
    out = {}
    for p in g.params.values():
        t = torch.empty(p.shape, dtype=DTYPES[p.dtype])
        initialize(t, p.init, p.init_args)
        out[p.name] = t
    return out


CASES = [
    ("linear", "f32[B, 37]", (13,), {}, lambda: nn.Linear(37, 13)),
    ("linear", "f32[B, 37]", (13,), {"bias": False}, lambda: nn.Linear(37, 13, bias=False)),
    ("conv2d", "f32[B, 6, 9, 9]", (10, 3), {"groups": 2}, lambda: nn.Conv2d(6, 10, 3, groups=2)),
    ("conv1d", "f32[B, 5, 20]", (4, 7), {}, lambda: nn.Conv1d(5, 4, 7)),
    ("embedding", "i64[B, T]", (50, 8), {}, lambda: nn.Embedding(50, 8)),
    ("layernorm", "f32[B, 12]", (), {}, lambda: nn.LayerNorm(12)),
    ("rmsnorm", "f32[B, 12]", (), {}, lambda: nn.RMSNorm(12)),
    ("batchnorm", "f32[B, 6, T]", (), {}, lambda: nn.BatchNorm1d(6)),
    ("lstm", "f32[B, T, 5]", (9,), {"layers": 2, "bidirectional": True}, lambda: nn.LSTM(5, 9, 2, bidirectional=True)),
    ("gru", "f32[B, T, 5]", (9,), {}, lambda: nn.GRU(5, 9)),
    ("rnn", "f32[B, T, 5]", (9,), {"bias": False}, lambda: nn.RNN(5, 9, bias=False)),
]


@pytest.mark.parametrize("name,spec,args,kw,ref", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_same_numbers_as_pytorch_under_a_seed(name, spec, args, kw, ref):
    b, (x,) = new(x=spec)
    call(b, name, x, *args, inst="m", **kw)
    got = materialize(b.graph, seed=1234)
    torch.manual_seed(1234)
    want = ref().state_dict()
    assert sorted(got) == sorted(f"m.{k}" for k in want), "state_dict keys follow the PyTorch layer"
    for k, v in want.items():
        assert got[f"m.{k}"].dtype == v.dtype and torch.equal(got[f"m.{k}"], v), f"m.{k} differs from PyTorch"


def test_pos_embedding_is_normal_like_nn_embedding():
    b, (x,) = new(x="i64[B, T]")
    call(b, "pos_embedding", x, 300, 40, inst="wpe")
    w = materialize(b.graph, seed=0)["wpe.weight"]
    assert w.shape == (300, 40) and abs(w.mean().item()) < 0.02 and abs(w.std().item() - 1) < 0.02


@pytest.mark.parametrize("fan_in", [3, 37, 1000])
def test_uniform_bound_is_one_over_sqrt_fan_in(fan_in):
    w = torch.empty(4000, fan_in)
    initialize(w, "kaiming_uniform", {"a": math.sqrt(5)})
    bound = 1 / math.sqrt(fan_in)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound, "should fill the whole interval"
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.02 * bound


def test_every_initializer_runs_and_unknown_names_fail():
    args = {"constant": {"value": 0.5}, "uniform": {"bound": 0.1}}
    for name in INITS:
        t = torch.full((64, 32), float("nan"))
        initialize(t, name, args.get(name, {}))
        assert torch.isfinite(t).all(), name
    t = torch.empty(3)
    initialize(t, "uniform", {"low": 2.0, "high": 3.0})
    assert ((t >= 2) & (t <= 3)).all()
    with pytest.raises(ValueError, match="unknown initializer 'glorot'"):
        initialize(t, "glorot", {})
    p = torch.nn.Parameter(torch.empty(5))
    initialize(p, "normal", {"std": 0.02})  # works on leaf parameters (no_grad inside)
    assert p.requires_grad and p.abs().max() < 0.2
