"""Emitted PyTorch code of the core, shape and pointwise ops, run against hand-written torch.

Graphs are built through a Builder with symbolic dims, evaluated through each op's emit
(tests/ops/opcheck.py) with odd sizes and fresh random float64 inputs; every node's runtime
shape is also checked against its inferred type.
"""
from __future__ import annotations

import pytest
import torch
from ops.opcheck import call, check, new, run

from nndsl.ir import dims as D

SZ = {"B": 3, "T": 7}
Tsym = D.symbol("T")


def op(name, attrs=None):
    """build(b, *xs) adding one op over all inputs."""
    return lambda b, *xs: b.op(name, list(xs), attrs or {})


@pytest.mark.parametrize("name,ref", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("maximum", torch.maximum), ("minimum", torch.minimum),
])
def test_binary(name, ref):
    check({"a": "f32[B, T, 1]", "b": "f32[T, 5]"}, op(name), lambda a, b, P: ref(a, b), SZ)


def test_pow_and_int_arithmetic():
    x, y = torch.rand(3, 7, dtype=torch.float64) + 0.5, torch.randn(7, dtype=torch.float64)
    check({"a": "f32[B, T]", "b": "f32[T]"}, op("pow"), lambda a, b, P: a ** b, SZ, inputs=[x, y])
    check({"a": "i64[B, T]", "b": "i64[T]"}, op("add"), lambda a, b, P: a + b, SZ)
    a, b = torch.randint(-9, 9, (3, 7)), torch.randint(1, 9, (7,))
    check({"a": "i64[B, T]", "b": "i64[T]"}, op("div"), lambda a, b, P: a / b, SZ, inputs=[a, b])


@pytest.mark.parametrize("name,value,ref", [
    ("add_s", 1.5, lambda x: x + 1.5), ("sub_s", -2, lambda x: x + 2), ("mul_s", Tsym, lambda x: x * 7),
    ("div_s", 3.0, lambda x: x / 3), ("rsub_s", 1, lambda x: 1 - x), ("rdiv_s", 2.5, lambda x: 2.5 / x),
    ("pow_s", 3, lambda x: x ** 3), ("pow_s", -0.5, lambda x: 1 / x.sqrt()),
    ("add_s", float("-inf"), lambda x: x - float("inf")),
])
def test_scalar_ops(name, value, ref):
    x = torch.rand(3, 7, dtype=torch.float64) + 0.5
    check({"x": "f32[B, T]"}, op(name, {"value": value}), lambda x, P: ref(x), SZ, inputs=[x])


def test_scalar_expression_over_dims():
    import sympy

    x = torch.randn(3, 7, dtype=torch.float64)
    check({"x": "f32[B, T]"}, op("mul_s", {"value": 1 / sympy.sqrt(Tsym)}), lambda x, P: x / 7 ** 0.5, SZ,
          inputs=[x])
    check({"x": "i64[B, T]"}, op("rsub_s", {"value": Tsym - 1}), lambda x, P: 6 - x, SZ)


def test_neg_cast():
    check({"x": "f32[B, T]"}, op("neg"), lambda x, P: -x, SZ)
    check({"x": "f32[B, T]"}, op("cast", {"dtype": "i64"}), lambda x, P: x.to(torch.int64), SZ)
    check({"x": "i64[B, T]"}, op("cast", {"dtype": "f64"}), lambda x, P: x.double(), SZ)


@pytest.mark.parametrize("a,b", [("f32[B, T, 5]", "f32[5, 3]"), ("f32[B, 1, T, 4]", "f32[2, 4, T]"),
                                 ("f32[5]", "f32[5]"), ("f32[T, 5]", "f32[5]"), ("f32[5]", "f32[B, 5, 2]")])
def test_matmul(a, b):
    check({"a": a, "b": b}, op("matmul"), lambda a, b, P: torch.matmul(a, b), SZ)


S_ = ("slice", None, None, None)


@pytest.mark.parametrize("index,py", [
    ((S_, -1), lambda x: x[:, -1]),
    (("...", ("slice", None, 2, None)), lambda x: x[..., :2]),
    ((0, None), lambda x: x[0, None]),
    ((S_, ("slice", 1, None, None)), lambda x: x[:, 1:]),
    ((S_, ("slice", -3, None, None), 2), lambda x: x[:, -3:, 2]),
    ((S_, ("slice", None, Tsym - 1, 2)), lambda x: x[:, :6:2]),
    ((S_, Tsym - 1), lambda x: x[:, 6]),
    (("...", ("slice", 1, -1, 2)), lambda x: x[..., 1:-1:2]),
    ((), lambda x: x),
])
def test_getitem(index, py):
    check({"x": "f32[B, T, 5]"}, op("getitem", {"index": index}), lambda x, P: py(x), SZ)


# ------------------------------------------------------------------------------------ shape ops
def test_reshape_flatten():
    B, T = D.symbol("B"), D.symbol("T")
    check({"x": "f32[B, T, 6]"}, op("reshape", {"shape": (B, T, 2, 3)}), lambda x, P: x.reshape(3, 7, 2, 3), SZ)
    check({"x": "f32[B, T, 6]"}, op("reshape", {"shape": (-1, 3)}), lambda x, P: x.reshape(-1, 3), SZ)
    check({"x": "f32[B, T, 6]"}, op("reshape", {"shape": (B * T * 6,)}), lambda x, P: x.flatten(), SZ)
    check({"x": "f32[B, 2, T, 3]"}, op("flatten", {"start": 1, "end": -1}), lambda x, P: x.flatten(1), SZ)
    check({"x": "f32[B, 2, T, 3]"}, op("flatten", {"start": 0, "end": 2}), lambda x, P: x.flatten(0, 2), SZ)


def test_axes_ops():
    check({"x": "f32[B, T, 5]"}, op("permute", {"dims": (2, 0, 1)}), lambda x, P: x.permute(2, 0, 1), SZ)
    check({"x": "f32[B, T, 5]"}, op("transpose", {"a": -1, "b": 0}), lambda x, P: x.transpose(-1, 0), SZ)
    check({"x": "f32[B, T]"}, op("unsqueeze", {"dim": -1}), lambda x, P: x.unsqueeze(-1), SZ)
    check({"x": "f32[B, 1, T, 1]"}, op("squeeze", {"dim": None}), lambda x, P: x.squeeze(3).squeeze(1), SZ)
    check({"x": "f32[B, 1, T, 1]"}, op("squeeze", {"dim": -1}), lambda x, P: x.squeeze(-1), SZ)
    # a symbolic dim that happens to be 1 at run time is not squeezed when dim is omitted
    check({"x": "f32[B, 1, T]"}, op("squeeze", {"dim": None}), lambda x, P: x.squeeze(1), {"B": 1, "T": 1})


def test_concat_split():
    check({"a": "f32[B, T, 2]", "b": "f32[B, T, 3]", "c": "f32[B, T, 1]"}, op("concat", {"dim": -1}),
          lambda a, b, c, P: torch.cat([a, b, c], -1), SZ)
    check({"x": "f32[B, T, 9]"}, lambda b, x: call(b, "split", x, 3),
          lambda x, P: tuple(x.split(3, dim=-1)), SZ)
    check({"x": "f32[B, T, 9]"}, lambda b, x: call(b, "split", x, [2, 7]),
          lambda x, P: tuple(x.split([2, 7], dim=-1)), SZ)
    check({"x": "f32[B, 2*T, 4]"}, lambda b, x: call(b, "split", x, 2, dim=1),
          lambda x, P: tuple(x.split(7, dim=1)), SZ)
    check({"x": "f32[B, T, 9]"}, lambda b, x: call(b, "split", x, 1), lambda x, P: x, SZ)
    check({"a": "f32[B, T]", "b": "f32[B, T]"}, lambda b, x, y: call(b, "cat", [x, y], dim=0),
          lambda a, b, P: torch.cat([a, b]), SZ)


# ---------------------------------------------------------------------------- pointwise, reduce
@pytest.mark.parametrize("name,ref", [
    ("relu", torch.relu), ("silu", lambda x: x * torch.sigmoid(x)), ("sigmoid", lambda x: 1 / (1 + torch.exp(-x))),
    ("tanh", torch.tanh), ("exp", torch.exp), ("abs", torch.abs),
    ("log", lambda x: torch.log(x.abs())), ("sqrt", lambda x: torch.sqrt(x.abs())),
    ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / 2 ** 0.5))),
])
def test_unary(name, ref):
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    if name in ("log", "sqrt"):
        x = x.abs()
    check({"x": "f32[B, T, 4]"}, lambda b, x: call(b, name, x), lambda x, P: ref(x), SZ, inputs=[x])


def test_gelu_tanh_softmax():
    c = (2 / torch.pi) ** 0.5
    check({"x": "f32[B, T]"}, lambda b, x: call(b, "gelu", x, approximate="tanh"),
          lambda x, P: 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x ** 3))), SZ)
    check({"x": "f32[B, T, 5]"}, lambda b, x: call(b, "softmax", x, dim=1),
          lambda x, P: x.exp() / x.exp().sum(1, keepdim=True), SZ)
    check({"x": "f32[B, T, 5]"}, lambda b, x: call(b, "log_softmax", x),
          lambda x, P: x - x.exp().sum(-1, keepdim=True).log(), SZ)


@pytest.mark.parametrize("dim,keep", [(None, False), (None, True), (1, False), ([0, 2], True), (-1, True)])
def test_reductions(dim, keep):
    for name, ref in (("sum", torch.sum), ("mean", torch.mean), ("max", torch.amax), ("min", torch.amin)):
        def build(b, x, name=name):
            return call(b, name, x, dim=dim, keepdim=keep)

        def want(x, P, ref=ref):
            dims = tuple(range(x.dim())) if dim is None else dim
            return ref(x, dim=dims, keepdim=keep)

        check({"x": "f32[B, T, 4]"}, build, want, SZ)
    check({"x": "i64[B, T]"}, lambda b, x: call(b, "max", x, dim=1), lambda x, P: x.max(1).values, SZ)
    check({"x": "bool[B, T]"}, lambda b, x: call(b, "sum", x), lambda x, P: x.sum(), SZ)


def test_dropout_follows_training_flag():
    b, (x,) = new(x="f32[B, T]")
    b.graph.outputs = [call(b, "dropout", x, 0.5)]
    xs = [torch.randn(3, 7, dtype=torch.float64)]
    assert torch.equal(run(b.graph, xs, SZ)[0], xs[0]), "eval mode must be the identity"
    torch.manual_seed(3)
    got = run(b.graph, xs, SZ, training=True)[0]
    torch.manual_seed(3)
    assert torch.equal(got, torch.nn.functional.dropout(xs[0], 0.5, True))
    b2, (x2,) = new(x="f32[B, T]")
    assert call(b2, "dropout", x2, 0.0) is x2 and not b2.graph.nodes, "p=0 adds no node"


def test_causal_mask_and_hand_attention():
    """q @ k^T * scale + causal_mask(T), softmax, @ v — as the language's HandAttention writes it."""
    def build(b, q, k, v):
        s = b.op("matmul", [q, b.op("transpose", [k], {"a": -2, "b": -1})])
        s = b.op("add", [b.op("mul_s", [s], {"value": 0.5}), call(b, "causal_mask", Tsym)])
        return b.op("matmul", [call(b, "softmax", s), v])

    def ref(q, k, v, P):
        s = q @ k.transpose(-2, -1) * 0.5
        s = s.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, -1) @ v

    spec = "f32[B, 2, T, 4]"
    check({"q": spec, "k": spec, "v": spec}, build, ref, SZ)
    b, (q,) = new(q="f32[B, T]")
    mask = run(b.graph, [torch.zeros(3, 7)], SZ, outputs=[call(b, "causal_mask", Tsym)])[0]
    assert mask.dtype == torch.float32 and torch.equal(mask.isinf(), torch.ones(7, 7).triu(1).bool())
    assert (mask[~mask.isinf()] == 0).all() and (mask[mask.isinf()] < 0).all()
