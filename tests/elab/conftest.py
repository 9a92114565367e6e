"""Test-only ops and builtins for the elaborator tests (names start with ``t_``).

They let the tests pin down exactly what elaboration passes to a builtin (argument kinds,
scopes, parameter names) independently of the real standard library. They are registered
for each test module and removed afterwards; the core IR ops (add, mul_s, getitem...) are
the real ones.
"""
from __future__ import annotations

import pytest

import nndsl.layers
import nndsl.ops
from nndsl.ir import dims as D
from nndsl.ir.types import TensorType
from nndsl.layers import registry as L
from nndsl.ops import registry as R


def _emit(e):
    return "None"  # never lowered: these tests stop at the IR


def _same(c):
    return c.types[0]


# ---------------------------------------------------------------- test ops and builtins
def _t_linear(c):
    x, w = c.types[0], c.types[1]
    if not D.equal(x.shape[-1], w.shape[1]):
        raise c.error(f"t_linear: {c.describe(0)} has {D.dim_str(x.shape[-1])} features, weight wants {w.shape[1]}")
    return x.with_shape(x.shape[:-1] + (w.shape[0],))


def _t_split(c):
    t, n, dim = c.types[0], c.attrs["n"], c.axis(c.attrs["dim"], c.types[0].rank)
    try:
        part = D.exact_div(t.shape[dim], n)
    except ValueError:
        raise c.error(f"t_split: {D.dim_str(t.shape[dim])} is not divisible by {n}") from None
    return [t.with_shape(t.shape[:dim] + (part,) + t.shape[dim + 1:])] * n


def _t_reshape(c):
    t, shape = c.types[0], tuple(c.attrs["shape"])
    if not D.equal(D.product(t.shape), D.product(shape)):
        raise c.error(f"t_reshape: cannot reshape {t} to {D.shape_str(shape)}")
    return t.with_shape(shape)


def _t_transpose(c):
    t = c.types[0]
    a, b = c.axis(c.attrs["a"], t.rank), c.axis(c.attrs["b"], t.rank)
    s = list(t.shape)
    s[a], s[b] = s[b], s[a]
    return t.with_shape(s)


def _t_conv2d(c):
    x, w = c.types[0], c.types[1]
    k, st, p = w.shape[2], c.attrs["stride"], c.attrs["padding"]
    hw = [D.floordiv(D.norm(h + 2 * p - k), st) + 1 for h in x.shape[2:]]
    return TensorType((x.shape[0], w.shape[0], *hw), x.dtype)


TEST_OPS = {"t_linear": _t_linear, "t_relu": _same, "t_split": _t_split, "t_reshape": _t_reshape,
            "t_transpose": _t_transpose, "t_conv2d": _t_conv2d}


def t_linear(b, x, out, bias):
    w = b.param("weight", (out, x.type.shape[-1]), init="kaiming")
    ins = [x, w] + ([b.param("bias", (out,), init="zeros")] if bias else [])
    return b.op("t_linear", ins)


def t_conv2d(b, x, out, kernel, stride, padding):
    k = kernel if isinstance(kernel, int) else kernel[0]
    w = b.param("weight", (out, x.type.shape[1], k, k), init="kaiming")
    return b.op("t_conv2d", [x, w], {"stride": stride, "padding": padding})


def t_layernorm(b, x):
    return b.op("mul", [x, b.param("weight", (x.type.shape[-1],), init="ones")])


BUILTINS = [
    ("t_linear", "x: tensor, out: int, bias: bool = true", True, t_linear),
    ("t_conv2d", "x: tensor, out: int, kernel: ints = 3, stride: int = 1, padding: int = 0", True, t_conv2d),
    ("t_layernorm", "x: tensor", True, t_layernorm),
    ("t_relu", "x: tensor", False, lambda b, x: b.op("t_relu", [x])),
    ("t_split", "x: tensor, n: int, dim: int = -1", False, lambda b, x, n, dim: b.op("t_split", [x],
                                                                                     {"n": n, "dim": dim})),
    ("t_reshape", "x: tensor, shape: dims", False, lambda b, x, shape: b.op("t_reshape", [x], {"shape": shape})),
    # an argument named like the builder parameter: builtins are called positionally
    ("t_transpose", "x: tensor, a: int, b: int", False,
     lambda bld, x, a, b: bld.op("t_transpose", [x], {"a": a, "b": b})),
    ("t_concat", "*xs: tensors, dim: int = 0", False, lambda b, xs, dim: xs[0]),
    ("t_opt", "x: tensor, y: tensor?, scale: float = 1.0", False,
     lambda b, x, y, scale: x if y is None else b.op("add", [x, y])),
    ("t_any", "x: tensor, v: any", False, lambda b, x, v: x),
]


@pytest.fixture(autouse=True, scope="module")
def t_registry():
    nndsl.ops.load_all()
    nndsl.layers.load_all()
    for name, fn in TEST_OPS.items():
        R.op(name, emit=_emit)(fn)
    for name, sig, stateful, fn in BUILTINS:
        L.builtin(name, sig, stateful=stateful)(fn)
    yield
    for name in TEST_OPS:
        R.OPS.pop(name, None)
    for name, *_ in BUILTINS:
        L.BUILTINS.pop(name, None)
