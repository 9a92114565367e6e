"""Shape errors: each one located at the expression that causes it and naming both shapes."""
from __future__ import annotations

import pytest
from elab.astkit import assign, block, call, model, op, param, program, ret, st, tt

from nndsl.elaborate import elaborate
from nndsl.errors import NndslNameError, NndslShapeError, NndslTypeError


def fails(*defs, err=NndslShapeError, **hp):
    with pytest.raises(err) as ei:
        elaborate(program(*defs), None, hp)
    return ei.value


def where(x):
    return (x.span.line, x.span.col)


def attn():
    return block("CausalSelfAttention", [param("x", tt("f32", "B", "T", "D")), param("heads", st("int"))],
                 [tt("f32", "B", "T", "D")], [ret("x")])


def test_block_argument_with_a_bound_dim_names_both_shapes():
    two = block("Mix", [param("x", tt("f32", "B", "T", "D")), param("y", tt("f32", "B", "T", "D"))],
                [tt("f32", "B", "T", "D")], [ret(op("+", "x", "y"))])
    m = model("M", [param("a", tt("f32", "B", "T", 384)), param("b", tt("f32", "B", "T", 128))], None,
              [ret(call("Mix", call("t_relu", "a", at=(3, 13)), call("t_relu", "b", at=(3, 27)), at=(3, 9)))])
    x = fails(two, m)
    assert x.message == "Mix expects y: f32[B, T, D] with D = 384, got f32[B, T, 128]"
    assert where(x) == (3, 27)
    assert "t.nn:3:27: shape error: Mix expects y" in str(x)


def test_block_dim_bound_by_a_scalar_parameter():
    m = model("M", [param("x", tt("f32", "B", "T", 128)), param("D", st("int"), 384)], None,
              [assign("y", call("t_linear", "x", "D")),
               ret(call("CausalSelfAttention", "x", 6, at=(4, 12)))])
    ok = elaborate(program(attn(), m), None, {})
    assert str(ok.outputs[0].type) == "f32[B, T, 128]"
    heads = block("Heads", [param("x", tt("f32", "B", "heads", "Dh")), param("heads", st("int"))], None, [ret("x")])
    m = model("M", [param("x", tt("f32", "B", 4, 16))], None, [ret(call("Heads", call("t_relu", "x", at=(2, 20)),
                                                                     3, at=(2, 14)))])
    x = fails(heads, m)
    assert x.message == "Heads expects x: f32[B, heads, Dh] with heads = 3, got f32[B, 4, 16]"
    assert where(x) == (2, 20)


def test_block_arithmetic_dim():
    blk = block("Pair", [param("x", tt("f32", "B", op("*", 2, "D"))), param("y", tt("f32", "B", "D"))], None,
                [ret("y")])
    ok = model("M", [param("x", tt("f32", "B", 10)), param("y", tt("f32", "B", 5))], None,
               [ret(call("Pair", "x", "y"))])
    assert str(elaborate(program(blk, ok)).outputs[0].type) == "f32[B, 5]"
    bad = model("M", [param("x", tt("f32", "B", 10)), param("y", tt("f32", "B", 4))], None,
                [ret(call("Pair", call("t_relu", "x", at=(7, 17)), "y", at=(7, 12)))])
    x = fails(blk, bad)
    assert x.message == "Pair expects x: f32[B, 2 * D] with D = 4, got f32[B, 10]"
    assert where(x) == (7, 17)


def test_block_symbolic_dims_must_agree():
    blk = block("Same", [param("x", tt("f32", "B", "T")), param("y", tt("f32", "B", "T"))], None, [ret("x")])
    m = model("M", [param("x", tt("f32", "B", "T")), param("y", tt("f32", "B", "S"))], None,
              [ret(call("Same", "x", call("t_relu", "y", at=(2, 30))))])
    x = fails(blk, m)
    assert x.message == "Same expects y: f32[B, T], got f32[B, S]"
    assert where(x) == (2, 30)


def test_rank_and_dtype_mismatch():
    m = model("M", [param("x", tt("f32", "B", 384))], None,
              [ret(call("CausalSelfAttention", call("t_relu", "x", at=(5, 29)), 6))])
    x = fails(attn(), m)
    assert x.message == "CausalSelfAttention expects x: f32[B, T, D] (rank 3), got f32[B, 384] (rank 2)"
    assert where(x) == (5, 29)
    m = model("M", [param("x", tt("i64", "B", "T", 8))], None,
              [ret(call("CausalSelfAttention", call("t_relu", "x", at=(6, 3)), 2))])
    x = fails(attn(), m, err=NndslTypeError)
    assert x.message == "CausalSelfAttention expects x: f32[B, T, D], got i64[B, T, 8]"
    assert where(x) == (6, 3)


def test_inexact_division_in_a_size():
    m = model("M", [param("x", tt("f32", "B", 10)), param("heads", st("int"), 3)], None,
              [ret(call("t_reshape", "x", ["B", "heads", op("/", 10, "heads", at=(2, 33))]))])
    x = fails(m)
    assert x.message.startswith("10 / 3 does not divide exactly")
    assert where(x) == (2, 33)


def test_block_return_type_mismatch():
    blk = block("Grow", [param("x", tt("f32", "B", "D"))], [tt("f32", "B", "D")],
                [ret(call("t_linear", "x", op("*", 2, "D"), at=(9, 12)))])
    m = model("M", [param("x", tt("f32", "B", 7))], None, [ret(call("Grow", "x"))])
    x = fails(blk, m)
    assert x.message == "Grow declares it returns f32[B, D] with D = 7, got f32[B, 14]"
    assert where(x) == (9, 12)


def test_model_output_mismatch_uses_hyperparameters():
    m = model("Net", [param("x", tt("f32", "B", 4)), param("classes", st("int"), 5)], [tt("f32", "B", "classes")],
              [ret(call("t_linear", "x", 10, at=(3, 12)))])
    x = fails(m)
    assert x.message == "Net declares it returns f32[B, classes] with classes = 5, got f32[B, 10]"
    assert where(x) == (3, 12)
    assert str(elaborate(program(m), None, {"classes": 10}).outputs[0].type) == "f32[B, 10]"
    ok = model("Net", [param("x", tt("f32", "B", 4)), param("classes", st("int"), 10)], [tt("f32", "B", "classes")],
               [ret(call("t_linear", "x", 10))])
    assert str(elaborate(program(ok)).outputs[0].type) == "f32[B, 10]"


def test_model_output_with_an_unknown_dim_name():
    m = model("Net", [param("x", tt("f32", "B", 4)), param("classes", st("int"), 4)],
              [tt("f32", "B", "clases", at=(1, 40))], [ret("x")])
    x = fails(m, err=NndslNameError)
    assert "unknown name 'clases'" in x.message and "did you mean 'classes'" in str(x)
    assert where(x) == (1, 40)


def test_op_inference_errors_are_located_at_the_expression():
    m = model("M", [param("x", tt("f32", "B", 3)), param("y", tt("f32", "B", 4))], None,
              [ret(op("+", "x", "y", at=(8, 11)))])
    x = fails(m)
    assert "[B, 3]" in x.message and "[B, 4]" in x.message
    assert where(x) == (8, 11)
    m = model("M", [param("x", tt("f32", "B", 6))], None, [ret(call("t_split", "x", 4, at=(2, 6)))])
    x = fails(m)
    assert "6 is not divisible by 4" in x.message and where(x) == (2, 6)


def test_symbolic_sizes_flow_into_conv_output():
    m = model("C", [param("x", tt("f32", "B", 1, "H", "W"))], None,
              [assign("h", call("t_conv2d", "x", 8, kernel=3)),
               ret(call("t_conv2d", "h", 4, kernel=[5, 5], stride=2, padding=1))])
    g = elaborate(program(m))
    assert g.symbols == ["B", "H", "W"]
    assert str(g.nodes[1].out.type) == "f32[B, 8, H - 2, W - 2]"
    # (H - 2 + 2 - 5) // 2 + 1
    assert str(g.outputs[0].type) == "f32[B, 4, (H - 5) // (2) + 1, (W - 5) // (2) + 1]"
    assert list(g.params) == ["t_conv2d.weight", "t_conv2d_1.weight"]
    assert g.params["t_conv2d_1.weight"].shape == (4, 8, 5, 5)
    x = fails(model("C", [param("x", tt("f32", "B", 1, "H", "W"))], None,
                    [ret(call("t_linear", "x", "H", at=(3, 3)))]), err=NndslTypeError)
    assert "expects a fixed int, got the dim H" in x.message and where(x) == (3, 3)
