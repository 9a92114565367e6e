"""The checker's dtype rules agree with PyTorch: for every builtin and operator, a one-line model is
checked with each input dtype, and ``check`` must accept it exactly when the plain PyTorch call runs
(on CPU, in training mode). An accepted program is then compiled and run (training and eval mode);
its output must have the dtype the checker said.

A few deliberate differences, where PyTorch on CPU runs what would fail elsewhere, are listed in
``STRICTER`` with the reason; the test checks the checker refuses them.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nndsl import compiler
from nndsl.backend import rt
from nndsl.errors import NndslError
from nndsl.ir.types import DTYPES

IN_DTYPES = ("f32", "f64", "i64", "i32", "bool")
R3, R4 = "[2, 3, 6]", "[2, 3, 6, 6]"

# name -> (input shape, .nn expression over x, the same computation in plain PyTorch)
CASES = {
    # operators
    "add": (R3, "x + x", lambda x: x + x),
    "sub": (R3, "x - x", lambda x: x - x),
    "mul": (R3, "x * x", lambda x: x * x),
    "div": (R3, "x / x", lambda x: x / x),
    "pow": (R3, "x ** x", lambda x: x ** x),
    "neg": (R3, "-x", lambda x: -x),
    "matmul": (R3, "x @ transpose(x, 1, 2)", lambda x: x @ x.transpose(1, 2)),
    "add_s": (R3, "x + 1", lambda x: x + 1),
    "add_sf": (R3, "x + 0.5", lambda x: x + 0.5),
    "sub_s": (R3, "x - 1", lambda x: x - 1),
    "rsub_s": (R3, "1 - x", lambda x: 1 - x),
    "mul_s": (R3, "x * 2", lambda x: x * 2),
    "div_s": (R3, "x / 2", lambda x: x / 2),
    "rdiv_s": (R3, "2 / x", lambda x: 2 / x),
    "pow_s": (R3, "x ** 2", lambda x: x ** 2),
    "pow_sf": (R3, "x ** 0.5", lambda x: x ** 0.5),
    "pow_neg": (R3, "x ** -1", lambda x: x ** -1),
    "getitem": (R3, "x[:, 1:, -1]", lambda x: x[:, 1:, -1]),
    # pointwise
    **{f: (R3, f"{f}(x)", getattr(torch, f)) for f in ("relu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs")},
    "silu": (R3, "silu(x)", F.silu),
    "gelu": (R3, "gelu(x)", F.gelu),
    "softmax": (R3, "softmax(x)", lambda x: torch.softmax(x, -1)),
    "log_softmax": (R3, "log_softmax(x)", lambda x: torch.log_softmax(x, -1)),
    "maximum": (R3, "maximum(x, x)", lambda x: torch.maximum(x, x)),
    "minimum": (R3, "minimum(x, x)", lambda x: torch.minimum(x, x)),
    "dropout": (R3, "dropout(x, 0.5)", lambda x: F.dropout(x, 0.5, True)),
    # reductions
    "sum": (R3, "sum(x, dim=1)", lambda x: torch.sum(x, 1)),
    "sum_all": (R3, "sum(x)", torch.sum),
    "mean": (R3, "mean(x, dim=1)", lambda x: torch.mean(x, 1)),
    "max": (R3, "max(x, dim=1)", lambda x: torch.amax(x, 1)),
    "min": (R3, "min(x, dim=-1)", lambda x: torch.amin(x, -1)),
    # shape
    "flatten": (R3, "flatten(x)", lambda x: torch.flatten(x, 1)),
    "reshape": (R3, "reshape(x, [2, 18])", lambda x: x.reshape(2, 18)),
    "transpose": (R3, "transpose(x, 1, 2)", lambda x: x.transpose(1, 2)),
    "permute": (R3, "permute(x, [2, 0, 1])", lambda x: x.permute(2, 0, 1)),
    "unsqueeze": (R3, "unsqueeze(x, 0)", lambda x: x.unsqueeze(0)),
    "squeeze": ("[2, 1, 6]", "squeeze(x, 1)", lambda x: x.squeeze(1)),
    "concat": (R3, "concat(x, x, dim=1)", lambda x: torch.cat([x, x], 1)),
    "split": (R3, "split(x, 2)[0]", lambda x: torch.split(x, 3, -1)[0]),
    "cast": (R3, "cast(x, \"f32\")", lambda x: x.to(torch.float32)),
    # pooling, attention, audio
    "maxpool1d": (R3, "maxpool1d(x, 2)", lambda x: F.max_pool1d(x, 2)),
    "maxpool2d": (R4, "maxpool2d(x, 2)", lambda x: F.max_pool2d(x, 2)),
    "avgpool1d": (R3, "avgpool1d(x, 2)", lambda x: F.avg_pool1d(x, 2)),
    "avgpool2d": (R4, "avgpool2d(x, 2)", lambda x: F.avg_pool2d(x, 2)),
    "attention": (R3, "attention(x, x, x)", lambda x: F.scaled_dot_product_attention(x, x, x)),
    "logmel": ("[2, 400]", "logmel(x, n_fft=64, hop=16, n_mels=8)", lambda x: rt.logmel(x, 16000, 64, 16, 8)),
    # layers (their weights are f32, as nndsl declares them)
    "linear": (R3, "linear(x, 4)", lambda x: F.linear(x, torch.randn(4, 6), torch.randn(4))),
    "conv1d": (R3, "conv1d(x, 4, 3)", lambda x: F.conv1d(x, torch.randn(4, 3, 3), torch.randn(4))),
    "conv2d": (R4, "conv2d(x, 4, 3)", lambda x: F.conv2d(x, torch.randn(4, 3, 3, 3), torch.randn(4))),
    "embedding": ("[2, 5]", "embedding(x, 10, 4)", lambda x: F.embedding(x, torch.randn(10, 4))),
    "pos_embedding": (R3, "pos_embedding(x, 8, 4)", lambda x: rt.pos_rows(torch.randn(8, 4), x.shape[1])),
    "layernorm": (R3, "layernorm(x)", lambda x: F.layer_norm(x, (6,), torch.ones(6), torch.zeros(6))),
    "rmsnorm": (R3, "rmsnorm(x)", lambda x: F.rms_norm(x, (6,), torch.ones(6))),
    "batchnorm": (R3, "batchnorm(x)", lambda x: F.batch_norm(x, torch.zeros(3), torch.ones(3), torch.ones(3),
                                                             torch.zeros(3), True)),
    "rnn": (R3, "rnn(x, 4)", lambda x: nn.RNN(6, 4, batch_first=True)(x)[0]),
    "lstm": (R3, "lstm(x, 4)", lambda x: nn.LSTM(6, 4, batch_first=True)(x)[0]),
    "gru": (R3, "gru(x, 4)", lambda x: nn.GRU(6, 4, batch_first=True)(x)[0]),
}

# (case, dtype) that PyTorch runs on CPU but the checker refuses, and why
STRICTER = {
    ("matmul", "i64"): "integer matmul runs on CPU only (CUDA has none); a checked model runs on both",
    ("matmul", "i32"): "as above",
    ("maxpool2d", "i64"): "max_pool1d refuses integers; one rule for every pool (the audit's maxpool on ints)",
    ("maxpool2d", "i32"): "as above",
    ("avgpool1d", "i64"): "average pooling of i64 only (not i32, not bool) on CPU; pools take floats",
    ("avgpool2d", "i64"): "as above",
    ("rmsnorm", "f64"): "the f32 weight differs from an f64 input; layernorm refuses the same mix",
}


def _input(shape: str, dtype: str) -> torch.Tensor:
    dims = [int(d) for d in shape.strip("[]").split(",")]
    if dtype == "bool":
        return torch.rand(dims) < 0.5
    if dtype in ("i64", "i32"):
        return torch.randint(1, 5, dims, dtype=DTYPES[dtype])  # >= 1: x ** -1 and 2 / x are defined
    return torch.rand(dims, dtype=DTYPES[dtype]) + 0.5


def _torch_runs(fn, x: torch.Tensor) -> bool:
    try:
        fn(x)
        return True
    except (RuntimeError, TypeError, NotImplementedError, ValueError):
        return False


@pytest.mark.parametrize("dtype", IN_DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_check_accepts_exactly_what_torch_runs(name: str, dtype: str):
    shape, expr, fn = CASES[name]
    source = f"model M(x: {dtype}{shape}) {{\n  return {expr}\n}}\n"
    torch.manual_seed(0)
    x = _input(shape, dtype)
    runs = _torch_runs(fn, x)
    try:
        checked = compiler.check(source)
        accepted, why = True, ""
    except NndslError as e:
        accepted, why = False, str(e)
    if (name, dtype) in STRICTER:
        assert runs and not accepted, f"{name} on {dtype}: expected torch to run it and check to refuse it"
        return
    assert accepted == runs, (f"{name} on {dtype}: torch {'runs' if runs else 'refuses'} {expr}, but check "
                              f"{'accepts it' if accepted else 'refuses it: ' + why}")
    if accepted:  # what the checker accepts, the compiled module runs, with the dtype it said
        module = compiler.build(source).module
        want = DTYPES[checked.graph.outputs[0].type.dtype]
        for train in (True, False):
            module.train(train)
            out = module(x)
            assert out.dtype == want, f"{name} on {dtype}: checked {want}, ran {out.dtype}"
