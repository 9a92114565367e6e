"""The elementwise and spread builtins against hand-written PyTorch in float64: values and gradients.

Each test builds the builtin through ``opcheck.call`` (as the elaborator would), runs the emitted
code on fresh random inputs of odd shapes and compares with the formula written out by hand (not
the same torch call where a formula is short), gradients included where the op is differentiable.
"""
from __future__ import annotations

import pytest
import torch
from ops.opcheck import call, check, check_grad, fails, new, rand_input, run, shape

from nndsl.errors import NndslTypeError

SZ = {"B": 3, "T": 7}
X = {"x": "f32[B, T, 5]"}


@pytest.mark.parametrize("name,kw,ref", [
    ("leaky_relu", {}, lambda x: torch.where(x > 0, x, 0.01 * x)),
    ("leaky_relu", {"slope": 0.3}, lambda x: torch.where(x > 0, x, 0.3 * x)),
    ("elu", {}, lambda x: torch.where(x > 0, x, torch.exp(x) - 1)),
    ("elu", {"alpha": 0.7}, lambda x: torch.where(x > 0, x, 0.7 * (torch.exp(x) - 1))),
    ("softplus", {}, lambda x: torch.log1p(torch.exp(x))),
    ("softplus", {"beta": 2.0, "threshold": 1.5},
     lambda x: torch.where(2 * x > 1.5, x, torch.log1p(torch.exp(2 * x)) / 2)),
    ("hardswish", {}, lambda x: x * torch.clamp(x + 3, 0, 6) / 6),
    ("rsqrt", {}, lambda x: 1 / torch.sqrt(x.abs() + 0.5)),
    ("sin", {}, lambda x: torch.sin(x)),
    ("cos", {}, lambda x: torch.cos(x)),
])
def test_activations_values_and_gradients(name, kw, ref):
    shift = name == "rsqrt"  # rsqrt on |x| + 0.5, away from 0

    def build(b, x):
        if shift:
            x = b.op("add_s", [call(b, "abs", x)], {"value": 0.5})
        return call(b, name, x, **kw)

    xs = [torch.randn(3, 7, 5, dtype=torch.float64) * 3]
    check_grad(X, build, lambda x, P: ref(x), SZ, tol=1e-9, inputs=xs)


def test_activations_refuse_ints_and_promote_where_torch_does():
    msg = fails("leaky_relu", ["i64[B, 4]"], {"slope": 0.1}, names=["idx"], kind=NndslTypeError)
    assert msg == "leaky_relu expects a floating-point input, got idx: i64[B, 4]"
    assert shape("rsqrt", ["i64[B, 4]"]) == "f32[B, 4]" and shape("cos", ["bool[3]"]) == "f32[3]"
    assert "beta must be a positive number" in fails("softplus", ["f32[3]"], {"beta": 0.0})


@pytest.mark.parametrize("name,sym", [("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="),
                                      ("ne", "!=")])
def test_comparisons(name, sym):
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}[sym]
    ints = {"a": "i64[B, T, 5]", "b": "i64[T, 1]"}  # ints, so that == and != see equal values
    xs = [torch.randint(0, 3, (3, 7, 5)), torch.randint(0, 3, (7, 1))]
    out, _, _ = check(ints, lambda b, a, c: call(b, name, a, c), lambda a, c, P: ops(a, c), SZ, inputs=xs)
    assert out[0].dtype == torch.bool and out[0].any() and not out[0].all()
    check(X, lambda b, x: call(b, name, x, 0.25), lambda x, P: ops(x, 0.25), SZ)
    check(X, lambda b, x: call(b, name, 0.25, x), lambda x, P: ops(0.25, x), SZ)  # number first: flipped


def test_comparison_errors():
    b, (x, i) = new(x="f32[B, 3]", i="i64[B, 3]")
    with pytest.raises(NndslTypeError, match="dtypes differ"):
        call(b, "lt", x, i)
    with pytest.raises(NndslTypeError, match="lt compares a tensor with a tensor or a number, got 1 and 2"):
        call(b, "lt", 1, 2)
    assert "do not broadcast" in fails("gt", ["f32[B, 3]", "f32[B, 4]"])


def test_where_values_and_gradients():
    specs = {"c": "f32[B, T, 5]", "a": "f32[B, T, 5]", "b": "f32[T, 1]"}

    def build(bl, c, a, b_):
        return call(bl, "where", call(bl, "gt", c, 0.0), a, b_)

    check_grad(specs, build, lambda c, a, b_, P: torch.where(c > 0, a, b_.expand(3, 7, 5)), SZ)
    check_grad(X, lambda b, x: call(b, "where", call(b, "lt", x, 0.5), x, -1.5),
               lambda x, P: torch.where(x < 0.5, x, torch.full_like(x, -1.5)), SZ)
    out, _, _ = check({"i": "i64[B, T]"}, lambda b, i: call(b, "where", call(b, "gt", i, 1), i, 0.5),
                      lambda i, P: torch.where(i > 1, i.double(), 0.5), SZ)
    out, _, _ = check({"i": "i64[B, T]"}, lambda b, i: call(b, "where", call(b, "gt", i, 1), 1, 0),
                      lambda i, P: (i > 1).long(), SZ)
    assert out[0].dtype == torch.int64


def test_where_errors():
    assert "where expects a bool condition" in fails("where", ["f32[3]", "f32[3]", "f32[3]"], {"a": None, "b": None})
    assert "dtypes differ" in fails("where", ["bool[3]", "f32[3]", "i64[3]"], {"a": None, "b": None})
    b, (c,) = new(c="bool[B]")
    with pytest.raises(NndslTypeError, match="where's argument 'b' must be a tensor or a number"):
        call(b, "where", c, 1.0, "x")


def test_clamp():
    check_grad(X, lambda b, x: call(b, "clamp", x, min=-0.5, max=0.75),
               lambda x, P: torch.minimum(torch.maximum(x, torch.tensor(-0.5, dtype=x.dtype)),
                                          torch.tensor(0.75, dtype=x.dtype)), SZ)
    check_grad(X, lambda b, x: call(b, "clamp", x, min=0.1), lambda x, P: torch.where(x < 0.1, 0.1, x), SZ)
    specs = {"x": "f32[B, T, 5]", "lo": "f32[5]"}
    check_grad(specs, lambda b, x, lo: call(b, "clamp", x, min=lo, max=1.0),
               lambda x, lo, P: torch.where(torch.maximum(x, lo) > 1.0, 1.0, torch.maximum(x, lo)), SZ)
    check({"i": "i64[B, T]"}, lambda b, i: call(b, "clamp", i, min=1.5),  # int with a float bound: f32
          lambda i, P: torch.where(i < 1.5, 1.5, i.double()), SZ)
    assert shape("clamp", ["i64[B]"], {"min": 0, "max": 3}) == "i64[B]"
    assert shape("clamp", ["i64[B]"], {"min": 0.5}) == "f32[B]"
    assert "min 2 is greater than max 1" in fails("clamp", ["f32[B]"], {"min": 2, "max": 1})
    b, (x,) = new(x="f32[B]")
    with pytest.raises(NndslTypeError, match="clamp needs min=, max= or both"):
        call(b, "clamp", x)


def test_pow_and_elementwise_min_max():
    specs = {"a": "f32[B, T, 5]", "b": "f32[5]"}
    xs = [torch.rand(3, 7, 5, dtype=torch.float64) + 0.5, torch.randn(5, dtype=torch.float64)]
    check_grad(specs, lambda bl, a, b_: call(bl, "pow", a, b_), lambda a, b_, P: torch.exp(b_ * torch.log(a)), SZ,
               inputs=xs)
    check_grad(X, lambda b, x: call(b, "pow", x, 3), lambda x, P: x * x * x, SZ)
    check_grad(specs, lambda bl, a, b_: call(bl, "max", a, b_), lambda a, b_, P: torch.where(a >= b_, a, b_), SZ)
    check_grad(specs, lambda bl, a, b_: call(bl, "min", a, b_), lambda a, b_, P: torch.where(a <= b_, a, b_), SZ)
    b, (x,) = new(x="f32[B]")
    with pytest.raises(NndslTypeError, match="exp\\(y \\* log\\(base\\)\\)"):
        call(b, "pow", 2.0, x)


@pytest.mark.parametrize("dtype", ["i64", "f32"])
def test_one_hot(dtype):
    xs = [torch.randint(0, 6, (3, 7))]
    want = torch.float64 if dtype == "f32" else torch.int64  # f32 runs as f64 in these tests
    out, _, _ = check({"i": "i64[B, T]"}, lambda b, i: call(b, "one_hot", i, 6, dtype=dtype),
                      lambda i, P: (i[..., None] == torch.arange(6)).to(want), SZ, inputs=xs)
    assert out[0].sum().item() == 21
    assert shape("one_hot", ["i32[B]"], {"classes": 4}) == "i64[B, 4]"
    b, (i,) = new(i="i32[B]")
    got = run(b.graph, [torch.tensor([3, 0], dtype=torch.int32)], {"B": 2}, outputs=[call(b, "one_hot", i, 4)])
    assert got[0].tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
    assert "one_hot expects an integer tensor" in fails("one_hot", ["f32[B]"], {"classes": 3}, kind=NndslTypeError)


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("dim,keepdim,correction", [(None, False, 1), (-1, True, 0), ([0, 2], False, 1),
                                                    (1, False, 2)])
def test_var_std(name, dim, keepdim, correction):
    def ref(x, P):
        axes = tuple(range(x.dim())) if dim is None else ((dim,) if isinstance(dim, int) else tuple(dim))
        n = 1
        for a in axes:
            n *= x.shape[a]
        dev = x - x.mean(dim=axes, keepdim=True)
        v = (dev * dev).sum(dim=axes, keepdim=keepdim) / (n - correction)
        return v if name == "var" else torch.sqrt(v)

    check_grad(X, lambda b, x: call(b, name, x, dim=dim, keepdim=keepdim, correction=correction), ref, SZ)


def test_var_unbiased_flag_and_errors():
    x = rand_input(new(x="f32[B, 9]")[1][0].type, {"B": 3})
    check({"x": "f32[B, 9]"}, lambda b, x: call(b, "var", x, dim=1, unbiased=False),
          lambda x, P: ((x - x.mean(1, keepdim=True)) ** 2).mean(1), {"B": 3}, inputs=[x])
    b, (x,) = new(x="f32[B, 9]")
    with pytest.raises(NndslTypeError, match="give unbiased= or correction=, not both"):
        call(b, "std", x, correction=0, unbiased=True)
    assert "std expects a floating-point input" in fails("std", ["i64[B]"], {"dims": None})
    assert "dim 3 is out of range" in fails("var", ["f32[B, 2]"], {"dims": (3,)})
