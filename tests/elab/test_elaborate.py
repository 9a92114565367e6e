"""Elaboration of hand-built ASTs: the ops emitted, their types, parameter names, hyperparameters."""
from __future__ import annotations

import pytest
import sympy
from elab.astkit import (assign, block, call, e, meth, model, neg, op, param, program, rep, ret, s, sl, st, sub, tt)

from nndsl.elaborate import elaborate, eval_scalar
from nndsl.elab.naming import snake_case
from nndsl.errors import NndslConfigError, NndslNameError, NndslShapeError, NndslSyntaxError, NndslTypeError
from nndsl.frontend import ast
from nndsl.ir import dims as D
from nndsl.ir.verify import verify

B, T, H, W = (D.symbol(n) for n in "BTHW")


def elab(*defs, model_name=None, trains=(), **hp):
    g = elaborate(program(*defs, trains=trains), model_name, hp)
    verify(g)
    return g


def ops(g, skip_params=True):
    return [n.op for n in g.nodes if not (skip_params and n.op == "param")]


def mlp(hidden=128):
    return model("MLP", [param("x", tt("f32", "B", 784)), param("hidden", st("int"), hidden)],
                 [tt("f32", "B", 10)],
                 [assign("h", call("t_relu", call("t_linear", "x", "hidden"))),
                  ret(call("t_linear", "h", 10))])


# ----------------------------------------------------------------------------- a model end to end
def test_mlp_ops_types_params_symbols():
    g = elab(mlp())
    assert ops(g) == ["t_linear", "t_relu", "t_linear"]
    assert list(g.params) == ["t_linear.weight", "t_linear.bias", "t_linear_1.weight", "t_linear_1.bias"]
    assert g.params["t_linear.weight"].shape == (128, 784)
    assert g.params["t_linear_1.weight"].shape == (10, 128)
    assert [str(v.type) for v in g.outputs] == ["f32[B, 10]"]
    assert g.symbols == ["B"] and g.hyperparams == {"hidden": 128}
    assert g.name == "MLP" and g.file == "t.nn"
    assert [(v.name, str(v.type)) for v in g.inputs] == [("x", "f32[B, 784]")]
    # param nodes sit in the scope of their layer
    assert [n.scope for n in g.nodes if n.op == "t_linear"] == ["t_linear", "t_linear_1"]


@pytest.mark.parametrize("given, bound", [({"hidden": 64}, 64), ({"hidden": "37"}, 37), ({}, 128)])
def test_hyperparameter_overrides(given, bound):
    g = elab(mlp(), **given)
    assert g.hyperparams == {"hidden": bound}
    assert g.params["t_linear.weight"].shape == (bound, 784)


def test_hyperparameter_types_from_strings_and_python():
    m = model("M", [param("x", tt("f32", "B", "D")), param("D", st("int"), 4), param("p", st("float"), 0.5),
                    param("flag", st("bool"), False), param("tag", st("str"), "a"),
                    param("E", st("int"), op("*", 2, "D"))],
              None, [ret("x")])
    g = elab(m, D="6", p="0.1", flag="true", tag="zz")
    assert g.hyperparams == {"D": 6, "p": 0.1, "flag": True, "tag": "zz", "E": 12}  # E's default uses D
    assert isinstance(g.hyperparams["p"], float)
    assert str(g.inputs[0].type) == "f32[B, 6]" and g.symbols == ["B"]
    g = elab(m, p=1, flag=False)
    assert g.hyperparams["p"] == 1.0 and isinstance(g.hyperparams["p"], float)


@pytest.mark.parametrize("given, text", [
    ({"hiden": 3}, "did you mean 'hidden'?"),
    ({"hidden": "12.5"}, "hyperparameter 'hidden' is an int, got '12.5'"),
    ({"hidden": 2.0}, "is an int, got 2.0"),
    ({"hidden": True}, "is an int, got True"),
    ({"x": 3}, "'x' is an input of MLP, not a hyperparameter"),
])
def test_bad_hyperparameters(given, text):
    with pytest.raises(NndslConfigError) as ei:
        elab(mlp(), **given)
    assert text in str(ei.value)


def test_hyperparameter_without_default():
    m = model("M", [param("x", tt("f32", "B", "D")), param("D", st("int"))], None, [ret("x")])
    with pytest.raises(NndslConfigError, match="'D' has no default"):
        elab(m)
    assert str(elab(m, D=5).inputs[0].type) == "f32[B, 5]"


# ----------------------------------------------------------------------------- which model
def _two_models():
    a = model("Alpha", [param("x", tt("f32", "B", 3))], None, [ret(call("t_relu", "x"))])
    b = model("Beta", [param("x", tt("f32", "B", 3))], None, [ret(call("t_linear", "x", 4))])
    return a, b


def test_model_selection():
    a, b = _two_models()
    assert elab(a, b).name == "Alpha"
    assert elab(a, b, model_name="Beta").name == "Beta"
    train = ast.TrainSection("Beta", [], e(1).span)
    assert elab(a, b, trains=[train]).name == "Beta"
    assert elab(a, b, trains=[ast.TrainSection(None, [], e(1).span)]).name == "Alpha"
    with pytest.raises(NndslNameError, match="no model named 'Betta'") as ei:
        elab(a, b, model_name="Betta")
    assert "did you mean 'Beta'?" in str(ei.value)
    with pytest.raises(NndslNameError, match="did you mean 'Alpha'"):
        elab(a, b, trains=[ast.TrainSection("Alpah", [], e(1).span)])
    with pytest.raises(NndslNameError, match="defines no model"):
        elab(block("K", [], None, [ret(1)]))


# ----------------------------------------------------------------------------- naming
def _attn_block():
    """block CausalSelfAttention(x: f32[B, T, D], heads: int) -> f32[B, T, D]."""
    return block("CausalSelfAttention", [param("x", tt("f32", "B", "T", "D")), param("heads", st("int"))],
                 [tt("f32", "B", "T", "D")], [
                     assign("q,k,v", call("t_split", call("t_linear", "x", op("*", 3, "D"), name="qkv"), 3,
                                          dim=-1)),
                     assign("q", meth(meth("q", "t_reshape", ["B", "T", "heads", op("/", "D", "heads")]),
                                      "t_transpose", 1, 2)),
                     ret(call("t_linear", op("+", "v", "k"), "D", name="proj"))])


def _gpt(L=4, D_=24):
    blk = block("Block", [param("x", tt("f32", "B", "T", "D")), param("heads", st("int"))],
                [tt("f32", "B", "T", "D")], [
                    assign("x", op("+", "x", call("CausalSelfAttention", call("t_layernorm", "x", name="ln_1"),
                                                  "heads", name="attn"))),
                    ret("x")])
    m = model("GPT", [param("x", tt("f32", "B", "T", "D")), param("D", st("int"), D_), param("L", st("int"), L),
                      param("heads", st("int"), 6)],
              [tt("f32", "B", "T", "D")], [
                  rep("L", [assign("x", call("Block", "x", "heads"))], name="blocks"),
                  ret(call("t_linear", call("t_layernorm", "x", name="ln_f"), "D", bias=False, name="lm_head"))])
    return program(_attn_block(), blk, m)


def test_repeat_of_block_names_params_like_a_module_list():
    g = elaborate(_gpt(), None, {"L": 5})
    verify(g)
    assert "blocks.3.attn.qkv.weight" in g.params
    assert g.params["blocks.3.attn.qkv.weight"].shape == (72, 24)
    assert [k for k in g.params if k.startswith("blocks.4.")] == [
        "blocks.4.ln_1.weight", "blocks.4.attn.qkv.weight", "blocks.4.attn.qkv.bias",
        "blocks.4.attn.proj.weight", "blocks.4.attn.proj.bias"]
    assert not any(k.startswith("blocks.5") for k in g.params)
    assert list(g.params)[-2:] == ["ln_f.weight", "lm_head.weight"]  # bias=False: no lm_head.bias
    reshapes = [n for n in g.nodes if n.op == "t_reshape"]
    assert len(reshapes) == 5 and reshapes[0].attrs["shape"] == [B, T, 6, 4]
    assert [str(n.out.type) for n in g.nodes if n.op == "t_transpose"][0] == "f32[B, 6, T, 4]"
    assert g.symbols == ["B", "T"]


def test_repeat_with_several_stateful_calls_and_without_as():
    m = model("M", [param("x", tt("f32", "B", 5))], None, [
        rep(2, [assign("x", call("t_linear", call("t_linear", "x", 5), 5))], name="layers"),
        rep(1, [assign("x", call("t_linear", "x", 5))]),
        rep(2, [assign("x", call("t_relu", "x"))]),
        ret("x")])
    g = elab(m)
    assert [k for k in g.params if k.endswith("weight")] == [
        "layers.0.t_linear.weight", "layers.0.t_linear_1.weight",
        "layers.1.t_linear.weight", "layers.1.t_linear_1.weight",
        "repeat.0.weight"]  # single stateful call: the instance is repeat.0
    assert ops(g) == ["t_linear"] * 5 + ["t_relu"] * 2
    assert [n.scope for n in g.nodes if n.op == "t_relu"] == ["repeat_1.0", "repeat_1.1"]


def test_repeat_zero_times_and_count_errors():
    body = [assign("x", call("t_linear", "x", 3))]
    g = elab(model("M", [param("x", tt("f32", "B", 3)), param("n", st("int"), 0)], None,
                   [rep("n", body, name="r"), ret("x")]))
    assert ops(g) == [] and not g.params
    for count, err in [(-1, ">= 0"), (2.5, "fixed int count"), ("B", "fixed int count")]:
        with pytest.raises(NndslTypeError, match=err):
            elab(model("M", [param("x", tt("f32", "B", 3))], None, [rep(count, body), ret("x")]))


def test_instance_names_snake_case_counters_and_explicit_names():
    assert [snake_case(n) for n in ("CausalSelfAttention", "MLP", "GPT2Block", "LSTMCell", "conv2d")] == [
        "causal_self_attention", "mlp", "gpt2_block", "lstm_cell", "conv2d"]
    inner = block("MLPHead", [param("x", tt("f32", "B", "D"))], None, [ret(call("t_linear", "x", "D"))])
    m = model("M", [param("x", tt("f32", "B", 4))], None, [
        assign("x", call("MLPHead", "x")),
        assign("x", call("MLPHead", "x")),
        assign("x", call("t_linear", "x", 4, name="fc")),
        assign("x", call("t_linear", "x", 4)),
        ret("x")])
    g = elab(inner, m)
    assert [k for k in g.params if k.endswith("weight")] == [
        "mlp_head.t_linear.weight", "mlp_head_1.t_linear.weight", "fc.weight", "t_linear.weight"]
    dup = model("M", [param("x", tt("f32", "B", 4))], None, [
        assign("x", call("t_linear", "x", 4, name="fc")),
        assign("x", call("t_linear", "x", 4, name="fc", at=(3, 5))), ret("x")])
    with pytest.raises(NndslNameError, match="'fc' is already used") as ei:
        elab(dup)
    assert ei.value.span.line == 3
    with pytest.raises(NndslTypeError, match="owns no parameters, so name= does not apply"):
        elab(model("M", [param("x", tt("f32", "B", 4))], None, [ret(call("t_relu", "x", name="r"))]))


# ----------------------------------------------------------------------------- expressions
def test_tensor_arithmetic_ops():
    m = model("M", [param("x", tt("f32", "B", 3, 4)), param("y", tt("f32", 4, 5)), param("D", st("int"), 4)],
              None, [
                  assign("a", op("+", "x", "x")), assign("a", op("-", "a", "x")), assign("a", op("*", "a", "x")),
                  assign("a", op("/", "a", "x")), assign("a", op("**", "a", 2)), assign("a", op("@", "a", "y")),
                  assign("a", neg("a")), assign("a", op("+", "a", 1)), assign("a", op("*", 3, "a")),
                  assign("a", op("-", 2, "a")), assign("a", op("/", 1.0, "a")), assign("a", op("-", "a", "D")),
                  assign("a", op("/", "a", op("*", 2, "D"))),
                  ret("a")])
    g = elab(m)
    assert ops(g) == ["add", "sub", "mul", "div", "pow_s", "matmul", "neg", "add_s", "mul_s", "rsub_s",
                      "rdiv_s", "sub_s", "div_s"]
    assert [n.attrs.get("value") for n in g.nodes][7:] == [1, 3, 2, 1.0, 4, 8]
    assert str(g.outputs[0].type) == "f32[B, 3, 5]"


@pytest.mark.parametrize("o, left, right, msg", [
    ("**", 2, "x", "'\\*\\*' between"), ("//", "x", "x", "'//' is not defined on tensors"),
    ("@", "x", 2, "'@' between"), ("+", "x", s("a"), "cannot apply '\\+'"),
])
def test_tensor_arithmetic_errors(o, left, right, msg):
    m = model("M", [param("x", tt("f32", "B", 3))], None, [ret(op(o, left, right, at=(2, 9)))])
    with pytest.raises(NndslTypeError, match=msg) as ei:
        elab(m)
    assert (ei.value.span.line, ei.value.span.col) == (2, 9)


def test_subscripts_and_index_attrs():
    m = model("M", [param("x", tt("f32", "B", "T", 8)), param("D", st("int"), 3)], None, [
        assign("a", sub("x", sl(), -1)),
        assign("b", sub("x", ..., sl(None, "D"))),
        assign("c", sub("x", "None")),
        assign("d", sub("x", sl(1, None, 2), 0)),
        ret("a", "b", "c", "d")])
    g = elab(m)
    idx = [n.attrs["index"] for n in g.nodes]
    assert idx == [(("slice", None, None, None), -1), ("...", ("slice", None, 3, None)), (None,),
                   (("slice", 1, None, 2), 0)]
    assert ops(g) == ["getitem"] * 4


def test_method_sugar_is_a_call_with_the_receiver_first():
    g1 = elab(model("M", [param("x", tt("f32", "B", 5))], None, [ret(meth(meth("x", "t_linear", 7), "t_relu"))]))
    g2 = elab(model("M", [param("x", tt("f32", "B", 5))], None, [ret(call("t_relu", call("t_linear", "x", 7)))]))
    assert ops(g1) == ops(g2) == ["t_linear", "t_relu"]
    assert list(g1.params) == list(g2.params)
    assert str(g1.outputs[0].type) == str(g2.outputs[0].type) == "f32[B, 7]"


def test_unpacking_and_list_indexing():
    ok = model("M", [param("x", tt("f32", "B", 6))], None, [
        assign("parts", call("t_split", "x", 3)), assign("p", sub("parts", 2)),
        assign("a,b", call("t_split", "p", 2)), ret("a", "b")])
    g = elab(ok)
    assert [str(v.type) for v in g.outputs] == ["f32[B, 1]", "f32[B, 1]"]
    bad = model("M", [param("x", tt("f32", "B", 6))], None, [assign("a,b", call("t_split", "x", 3), at=(4, 2)),
                                                               ret("a")])
    with pytest.raises(NndslTypeError, match="cannot unpack 3 values into 2 names") as ei:
        elab(bad)
    assert ei.value.span.line == 4
    with pytest.raises(NndslTypeError, match="cannot unpack a tensor"):
        elab(model("M", [param("x", tt("f32", "B", 6))], None, [assign("a,b", "x"), ret("a")]))


def test_return_count_and_kind():
    m = model("M", [param("x", tt("f32", "B", 6))], [tt("f32", "B", 6), tt("f32", "B", 6)], [ret("x", at=(5, 5))])
    with pytest.raises(NndslTypeError, match="M returns 1 value but declares 2") as ei:
        elab(m)
    assert ei.value.span.line == 5
    with pytest.raises(NndslTypeError, match="a model returns tensors"):
        elab(model("M", [param("x", tt("f32", "B", 6))], None, [ret(3)]))
    with pytest.raises(NndslSyntaxError, match="has no return"):
        elab(model("M", [param("x", tt("f32", "B", 6))], None, [assign("y", "x")]))


# ----------------------------------------------------------------------------- calls
@pytest.mark.parametrize("c, err, text", [
    (call("t_linear", "x", 4, True, 5, at=(2, 3)), NndslTypeError, "t_linear takes 3 positional arguments but 4"),
    (call("t_linear", "x", at=(2, 3)), NndslTypeError, "t_linear is missing the argument 'out' (int)"),
    (call("t_conv2d", "x", 4, kernal=3, at=(2, 3)), NndslTypeError, "did you mean 'kernel'?"),
    (call("t_linear", "x", 4, out=5, at=(2, 3)), NndslTypeError, "t_linear got two values for 'out'"),
    (call("t_linear", "x", "x", at=(2, 3)), NndslTypeError, "t_linear's argument 'out' expects an int, got a tensor"),
    (call("t_linear", 3, 4, at=(2, 3)), NndslTypeError, "argument 'x' expects a tensor, got the int 3"),
    (call("t_linear", "x", "B", at=(2, 3)), NndslTypeError, "expects a fixed int, got the dim B"),
    (call("t_linear", "x", 4, bias=1, at=(2, 3)), NndslTypeError, "expects a bool (true or false), got the int 1"),
    (call("lienar", "x", 4, at=(2, 3)), NndslNameError, "unknown function 'lienar'"),
    (call("t_relu", "y", at=(2, 3)), NndslNameError, "unknown name 'y'"),
])
def test_call_errors_are_located(c, err, text):
    m = model("M", [param("x", tt("f32", "B", 4, 4, 4))], None, [ret(c)])
    with pytest.raises(err) as ei:
        elab(m)
    assert text in str(ei.value)
    assert ei.value.span is not None and ei.value.span.line == 2


def test_unknown_names_suggest():
    m = model("M", [param("x", tt("f32", "B", 4)), param("hidden", st("int"), 3)], None,
              [ret(call("t_linear", "x", "hiden"))])
    with pytest.raises(NndslNameError, match="did you mean 'hidden'"):
        elab(m)
    with pytest.raises(NndslNameError, match="did you mean 't_linear'"):
        elab(model("M", [param("x", tt("f32", "B", 4))], None, [ret(call("t_lienar", "x", 4))]))


def test_optional_variadic_any_and_defaults():
    m = model("M", [param("x", tt("f32", "B", 4))], None, [
        assign("a", call("t_opt", "x")), assign("b", call("t_opt", "x", "x", scale=2)),
        assign("c", call("t_concat", "a", "b", "x", dim=1)), assign("d", call("t_any", "c", [1, s("s")])),
        ret("d")])
    assert ops(elab(m)) == ["add"]


def test_block_scalar_params_keywords_and_defaults():
    blk = block("Scale", [param("x", tt("f32", "B", "D")), param("k", st("float"), 2.0),
                          param("n", st("int"), op("*", 2, "D"))], [tt("f32", "B", "n")],
                [ret(call("t_linear", op("*", "x", "k"), "n"))])
    m = model("M", [param("x", tt("f32", "B", 5))], None, [assign("a", call("Scale", "x")),
                                                            assign("b", call("Scale", "x", n=3, k=0.5)),
                                                            ret("a", "b")])
    g = elab(blk, m)
    assert [str(v.type) for v in g.outputs] == ["f32[B, 10]", "f32[B, 3]"]
    assert [n.attrs["value"] for n in g.nodes if n.op == "mul_s"] == [2.0, 0.5]
    assert list(g.params)[::2] == ["scale.t_linear.weight", "scale_1.t_linear.weight"]


def test_recursive_block_is_an_error():
    blk = block("Loop", [param("x", tt("f32", "B"))], None, [ret(call("Loop", "x"))])
    with pytest.raises(NndslTypeError, match="calls itself"):
        elab(blk, model("M", [param("x", tt("f32", "B"))], None, [ret(call("Loop", "x"))]))


def test_scalar_functions_at_compile_time():
    m = model("M", [param("x", tt("f32", "B", 16)), param("Dh", st("int"), 16)], None, [
        ret(op("*", "x", op("/", 1.0, call("sqrt", "Dh"))), call("t_linear", "x", call("max", 2, call("int", 3.7))))])
    g = elab(m)
    assert [n.attrs.get("value") for n in g.nodes if n.op == "mul_s"] == [0.25]
    assert str(g.outputs[1].type) == "f32[B, 3]"


# ----------------------------------------------------------------------------- eval_scalar
@pytest.mark.parametrize("expr, value", [
    (op("+", 2, op("*", 3, 4)), 14), (op("/", 7, 2), 3.5), (op("/", 8, 2), 4), (op("//", 7, 2), 3),
    (op("%", 7, 4), 3), (op("**", 2, 10), 1024), (neg(op("-", 1.5, 3)), 1.5), (call("sqrt", 16), 4.0),
    (call("min", 3, 1, 2), 1), (call("max", [3, 9]), 9), (call("abs", -3), 3), (call("int", 2.9), 2),
    (call("float", 2), 2.0), (call("exp", 0), 1.0), (call("log", 1), 0.0), ([1, op("*", 2, "D")], [1, 24]),
    (op("+", s("a"), s("b")), "ab"), (op("*", "D", "T"), 12 * T), (op("/", "T", 2), T / 2),
    (op("//", op("+", "T", 1), 2), sympy.floor((T + 1) / 2)), (call("max", "T", 1), T),
])
def test_eval_scalar(expr, value):
    got = eval_scalar(e(expr), {"D": 12, "T": T})
    assert got == value and type(got) is type(value), f"{expr}: expected {value!r}, got {got!r}"


def test_eval_scalar_dim_context_division_and_errors():
    with pytest.raises(NndslShapeError, match="7 / 2 does not divide exactly"):
        eval_scalar(op("/", 7, 2), {}, dim=True)
    assert eval_scalar(op("/", "T", 2), {"T": T}, dim=True) == T / 2
    with pytest.raises(NndslShapeError, match="does not divide exactly"):
        eval_scalar(op("/", op("+", op("*", 2, "T"), 1), 2), {"T": T}, dim=True)
    with pytest.raises(NndslTypeError, match="division by zero"):
        eval_scalar(op("//", 1, 0), {})
    with pytest.raises(NndslNameError, match="did you mean 'heads'"):
        eval_scalar(e("head"), {"heads": 2})
    with pytest.raises(NndslTypeError, match="cannot be evaluated at compile time"):
        eval_scalar(call("t_linear", 1), {})
    assert eval_scalar(e("None"), {}) is None
