"""Shape and dtype inference of every IR op, with symbolic dims, and its error messages."""
from __future__ import annotations

import pytest
from ops.opcheck import fails, infer, shape

from nndsl.errors import NndslTypeError
from nndsl.ir import dims as D
from nndsl.ops import registry as R


# ------------------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_binary_broadcasts_symbolic_dims(op):
    assert shape(op, ["f32[B, T, 1]", "f32[T, 7]"]) == "f32[B, T, 7]"
    assert shape(op, ["f32[B, 1]", "f32[5]"]) == "f32[B, 5]"
    msg = fails(op, ["f32[B, T, 5]", "f32[B, T, 6]"])
    assert "[B, T, 5]" in msg and "[B, T, 6]" in msg and "5 vs 6" in msg


def test_binary_dtypes():
    assert shape("add", ["i64[B]", "i64[B]"]) == "i64[B]"
    assert shape("div", ["i64[B]", "i64[B]"]) == "f32[B]"  # true division
    msg = fails("add", ["f32[B]", "i64[B]"], names=["x", "idx"], kind=NndslTypeError)
    assert "x: f32[B]" in msg and "idx: i64[B]" in msg
    fails("sub", ["bool[B]", "bool[B]"], kind=NndslTypeError)


@pytest.mark.parametrize("op,value,spec,out", [
    ("add_s", 1.5, "f32[B, 3]", "f32[B, 3]"), ("mul_s", 2, "i64[B]", "i64[B]"),
    ("mul_s", 0.5, "i64[B]", "f32[B]"), ("div_s", 2, "i32[B]", "f32[B]"), ("rdiv_s", 1, "f16[B]", "f16[B]"),
    ("rsub_s", 1, "i64[T]", "i64[T]"), ("pow_s", 2, "f64[B, T]", "f64[B, T]"), ("sub_s", 1, "bool[B]", None),
    ("add_s", D.symbol("T"), "i64[B]", "i64[B]"), ("add_s", 1, "bool[B]", "i64[B]"),
])
def test_scalar_ops(op, value, spec, out):
    if out is None:
        fails(op, [spec], {"value": value}, kind=NndslTypeError)
    else:
        assert shape(op, [spec], {"value": value}) == out


def test_neg():
    assert shape("neg", ["f32[B, T]"]) == "f32[B, T]"
    fails("neg", ["bool[B]"], kind=NndslTypeError)


@pytest.mark.parametrize("a,b,out", [
    ("f32[B, T, 5]", "f32[5, 7]", "f32[B, T, 7]"),
    ("f32[B, H, T, 4]", "f32[B, H, 4, T]", "f32[B, H, T, T]"),
    ("f32[3, 1, T, 4]", "f32[2, 4, 6]", "f32[3, 2, T, 6]"),
    ("f32[5]", "f32[5]", "f32[]"), ("f32[T, 5]", "f32[5]", "f32[T]"), ("f32[5]", "f32[B, 5, 2]", "f32[B, 2]"),
])
def test_matmul_semantics(a, b, out):
    assert shape("matmul", [a, b]) == out


def test_matmul_errors_name_shapes():
    msg = fails("matmul", ["f32[B, T, 64]", "f32[32, 10]"], names=["h", "w"])
    assert msg == "matmul: inner dims do not match (64 vs 32) in h: f32[B, T, 64] @ w: f32[32, 10]"
    fails("matmul", ["f32[]", "f32[3]"])
    assert "[2, 3, 4]" in fails("matmul", ["f32[2, 3, 4]", "f32[5, 4, 2]"])  # batch dims 2 vs 5


# ---------------------------------------------------------------------------------------- getitem
S = ("slice", None, None, None)


def sl(a=None, b=None, c=None):
    return ("slice", a, b, c)


@pytest.mark.parametrize("index,out", [
    ((S, -1), "f32[B, 6]"),
    ((Ellipsis,), "f32[B, T, 6]"),
    (("...", sl(None, 4)), "f32[B, T, 4]"),
    ((0,), "f32[T, 6]"),
    ((None, S, 1), "f32[1, B, 6]"),
    ((S, sl(1)), "f32[B, T - 1, 6]"),
    ((S, sl(-3)), "f32[B, min(3, T), 6]"),  # PyTorch clamps: T < 3 gives T
    ((S, sl(None, D.symbol("T") - 1)), "f32[B, T - 1, 6]"),
    ((S, sl(None, None, 2)), "f32[B, (T + 1) // (2), 6]"),
    (("...", sl(1, -1, 2)), "f32[B, T, 2]"),
    (("...", sl(None, 100)), "f32[B, T, 6]"),  # a static size clamps like Python
    (("...", None), "f32[B, T, 6, 1]"),
    ((), "f32[B, T, 6]"),
])
def test_getitem(index, out):
    index = tuple("..." if it is Ellipsis else it for it in index)
    assert shape("getitem", ["f32[B, T, 6]"], {"index": index}) == out


def test_getitem_errors():
    assert "index 6 is out of range for dim 2 (size 6) of x: f32[B, T, 6]" in fails(
        "getitem", ["f32[B, T, 6]"], {"index": ("...", 6)}, ["x"])
    assert "4 indices for x: f32[B, T, 6] (rank 3)" in fails(
        "getitem", ["f32[B, T, 6]"], {"index": (0, 0, 0, 0)}, ["x"])
    assert "at most one '...'" in fails("getitem", ["f32[B, T, 6]"], {"index": ("...", "...")})
    assert "step" in fails("getitem", ["f32[B, T, 6]"], {"index": (sl(None, None, -1),)})


def test_cast_and_param():
    assert shape("cast", ["f32[B, T]"], {"dtype": "bf16"}) == "bf16[B, T]"
    assert "unknown dtype 'float'" in fails("cast", ["f32[B]"], {"dtype": "float"}, kind=NndslTypeError)
    fails("param", [], {"name": "w"})


# ------------------------------------------------------------------------------------ shape ops
def test_reshape():
    assert shape("reshape", ["f32[B, T, 12]"], {"shape": (D.symbol("B"), D.symbol("T"), 3, 4)}) == "f32[B, T, 3, 4]"
    assert shape("reshape", ["f32[B, T, 12]"], {"shape": (D.symbol("B"), -1)}) == "f32[B, 12*T]"
    assert shape("reshape", ["f32[B, 4, 6]"], {"shape": (-1, 8)}) == "f32[3*B, 8]"
    msg = fails("reshape", ["f32[B, 64, 7, 7]"], {"shape": (D.symbol("B"), 1600)}, ["h"])
    assert msg == "reshape: cannot reshape h: f32[B, 64, 7, 7] (3136*B elements) to [B, 1600] (1600*B elements)"
    assert "at most one -1" in fails("reshape", ["f32[4]"], {"shape": (-1, -1)})
    assert "whole number" in fails("reshape", ["f32[B, T, 6]"], {"shape": (D.symbol("B"), -1, 4)})  # 3T/2


def test_flatten_permute_transpose():
    assert shape("flatten", ["f32[B, 64, 7, 7]"], {"start": 1, "end": -1}) == "f32[B, 3136]"
    assert shape("flatten", ["f32[B, T, 3, 4]"], {"start": 0, "end": 1}) == "f32[B*T, 3, 4]"
    assert "comes after" in fails("flatten", ["f32[B, T, 3]"], {"start": 2, "end": 1})
    assert shape("permute", ["f32[B, T, 5]"], {"dims": (2, 0, 1)}) == "f32[5, B, T]"
    assert "not a permutation" in fails("permute", ["f32[B, T, 5]"], {"dims": (0, 0, 1)})
    assert "3 dims given" in fails("permute", ["f32[B, T]"], {"dims": (0, 1, 2)})
    assert shape("transpose", ["f32[B, H, T, 8]"], {"a": 1, "b": -2}) == "f32[B, T, H, 8]"
    assert "dim 3 is out of range for a rank-2 tensor" in fails("transpose", ["f32[B, T]"], {"a": 0, "b": 3})


def test_unsqueeze_squeeze():
    assert shape("unsqueeze", ["f32[B, T]"], {"dim": -1}) == "f32[B, T, 1]"
    assert shape("unsqueeze", ["f32[B, T]"], {"dim": 0}) == "f32[1, B, T]"
    assert shape("squeeze", ["f32[B, 1, T, 1]"], {"dim": None}) == "f32[B, T]"
    assert shape("squeeze", ["f32[B, 1, T, 1]"], {"dim": 1}) == "f32[B, T, 1]"
    assert "dim 2 of x: f32[B, 1, T] has size T, not 1" in fails("squeeze", ["f32[B, 1, T]"], {"dim": 2}, ["x"])


def test_concat_split():
    assert shape("concat", ["f32[B, T, 3]", "f32[B, T, 5]"], {"dim": -1}) == "f32[B, T, 8]"
    assert shape("concat", ["f32[B, T, 3]", "f32[B, T, 3]"], {"dim": 1}) == "f32[B, 2*T, 3]"
    msg = fails("concat", ["f32[B, T, 3]", "f32[B, 4, 3]"], {"dim": 2}, ["a", "b"])
    assert "dim 1 differs (T vs 4) between a: f32[B, T, 3] and b: f32[B, 4, 3]" in msg
    outs = infer("split", ["f32[B, T, 12]"], {"sizes": (4, 4, 4), "dim": -1})
    assert [str(t) for t in outs] == ["f32[B, T, 4]"] * 3
    outs = infer("split", ["f32[B, 2*T, 3]"], {"sizes": (D.symbol("T"), D.symbol("T")), "dim": 1})
    assert [str(t) for t in outs] == ["f32[B, T, 3]"] * 2
    assert "add up to 11, but dim 2 of f32[B, T, 12] is 12" in fails(
        "split", ["f32[B, T, 12]"], {"sizes": (5, 6), "dim": 2})


# ------------------------------------------------------------------------- pointwise, reductions
@pytest.mark.parametrize("op", ["relu", "silu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs", "gelu"])
def test_unary(op):
    assert shape(op, ["f16[B, T, 3]"]) == "f16[B, T, 3]"
    if op in ("relu", "abs"):
        assert shape(op, ["i64[B]"]) == "i64[B]"
    elif op in ("sigmoid", "tanh", "exp", "log", "sqrt"):  # PyTorch computes these in f32
        assert shape(op, ["i64[B]"]) == "f32[B]" and shape(op, ["bool[B]"]) == "f32[B]"
    else:
        assert "floating-point" in fails(op, ["i64[B]"], names=["idx"], kind=NndslTypeError)


def test_gelu_softmax():
    assert "'none' or 'tanh'" in fails("gelu", ["f32[B]"], {"approximate": "fast"})
    assert shape("softmax", ["f32[B, T, T]"], {"dim": -1}) == "f32[B, T, T]"
    assert "dim 3 is out of range" in fails("log_softmax", ["f32[B, T, 3]"], {"dim": 3})


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reductions(op):
    assert shape(op, ["f32[B, T, 5]"], {"dims": None, "keepdim": False}) == "f32[]"
    assert shape(op, ["f32[B, T, 5]"], {"dims": (1,), "keepdim": False}) == "f32[B, 5]"
    assert shape(op, ["f32[B, T, 5]"], {"dims": (-1, 1), "keepdim": True}) == "f32[B, 1, 1]"
    assert "names an axis twice" in fails(op, ["f32[B, T]"], {"dims": (1, -1), "keepdim": False})


def test_reduction_dtypes():
    assert shape("sum", ["bool[B, T]"], {"dims": (1,), "keepdim": False}) == "i64[B]"
    assert shape("max", ["i64[B, T]"], {"dims": None, "keepdim": False}) == "i64[]"
    fails("mean", ["i64[B]"], {"dims": None}, kind=NndslTypeError)


def test_dropout_causal_mask():
    assert shape("dropout", ["f32[B, T]"], {"p": 0.1}) == "f32[B, T]"
    assert "probability" in fails("dropout", ["f32[B]"], {"p": 1.5})
    assert shape("causal_mask", ["i64[B, T]"], {"T": D.symbol("T")}) == "f32[T, T]"
    assert shape("causal_mask", ["i64[B, T]"], {"T": 5, "dtype": "bf16"}) == "bf16[5, 5]"
