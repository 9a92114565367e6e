"""The pattern matcher and the fixpoint driver, on small graphs."""
from __future__ import annotations

import pytest

from nndsl.errors import NndslLoweringError
from nndsl.passes import run_passes
from nndsl.passes.driver import apply_rules, fusion_budget
from nndsl.passes.pattern import O, OneOf, Reject, Rule, V

from .kit import EXAMPLES, graph, ops

TWO = """model M(x: f32[B, N], y: f32[B, N], N: int = 4) -> f32[B, N] {
    return %s
}"""


def root(src_expr: str):
    g = graph(TWO % src_expr)
    return g, g.outputs[0]


@pytest.mark.parametrize("expr", ["x + relu(y)", "relu(y) + x"])
def test_commutative_operands_match_either_order(expr):
    g, out = root(expr)
    (m,) = list(O.add(O.relu(V("a")), V("r")).match(out))
    assert m["a"] is g.inputs[1] and m["r"] is g.inputs[0]
    assert [n.op for n in m.nodes] == ["add", "relu"]


def test_non_commutative_operands_keep_their_order():
    _, out = root("relu(y) - x")
    assert list(O.sub(O.relu(V()), V()).match(out))
    _, out = root("x - relu(y)")
    assert not list(O.sub(O.relu(V()), V()).match(out))


def test_optional_trailing_operand():
    pat = O.linear(V("x"), V("w"), V("b", optional=True))
    g = graph("model M(x: f32[B, 4]) -> f32[B, 3] {\n return linear(x, 3, bias=false) + linear(x, 3)\n}")
    no_bias, bias = g.outputs[0].producer.inputs
    (m,) = pat.match(no_bias)
    assert m.get("b") is None
    (m,) = pat.match(bias)
    assert m["b"].type.shape == (3,)
    # a required operand may not be missing
    assert not list(O.linear(V(), V(), V()).match(no_bias))


def test_a_name_used_twice_must_bind_the_same_value():
    _, same = root("x * x")
    _, diff = root("x * y")
    pat = O.mul(V("a"), V("a"))
    assert len(list(pat.match(same))) == 1
    assert not list(pat.match(diff))


def test_guards_attrs_and_alternatives():
    _, out = root("softmax(x, dim=0)")
    assert not list(O.softmax(V(), dim=-1).match(out))
    assert list(O.softmax(V(), dim=lambda d: d in (0, -2)).match(out))
    _, out = root("x ** 2")
    sq = OneOf(O.mul(V("a"), V("a")), O.pow_s(V("a"), value=2))
    assert list(sq.match(out))
    assert list(O.pow_s(V("a", where=lambda v: v.type.rank == 2)).match(out))
    assert not list(O.pow_s(V("a", where=lambda v: v.type.rank == 3)).match(out))
    assert not list(O.pow_s(V()).where(lambda v: v.type.dtype == "f64").match(out))


def test_a_rewrite_returning_none_changes_nothing_and_reject_is_logged():
    g, _ = root("relu(x) + y")
    before = [n.op for n in g.nodes]
    assert not apply_rules(g, [Rule("never", O.add(V(), V()), lambda ed, m: None)], "t")
    assert [n.op for n in g.nodes] == before and not g.fusion_log
    assert not apply_rules(g, [Rule("relu + add", O.add(O.relu(V()), V()), lambda ed, m: Reject("no thanks"))], "t")
    (note,) = g.fusion_log
    assert note.candidate == "t: relu + add" and note.reason == "no thanks"
    assert {(s.line, s.col) for s in note.spans} == {(2, 12)}


def test_fixpoint_removes_a_chain_and_terminates():
    g, _ = root("x * 1 * 1 * 1 + y")
    rule = Rule("x * 1", O.mul_s(V("x"), value=1), lambda ed, m: m["x"])
    assert apply_rules(g, [rule], "t")
    assert ops(g) == {"add": 1}
    assert not apply_rules(g, [rule], "t")  # a second run finds nothing


def test_rules_that_undo_each_other_fail_instead_of_looping():
    g, _ = root("relu(x)")
    flip = [Rule("relu->tanh", O.relu(V("x")), lambda ed, m: ed.insert_before(m.root, "tanh", [m["x"]]).out),
            Rule("tanh->relu", O.tanh(V("x")), lambda ed, m: ed.insert_before(m.root, "relu", [m["x"]]).out)]
    with pytest.raises(NndslLoweringError, match="did not reach a fixpoint"):
        apply_rules(g, flip, "flip", max_rounds=10)


GPT = dict(L=2, heads=2, D=32, ctx=16)


def _fusions(budget):
    g = graph(EXAMPLES / "gpt_shakespeare.nn", **GPT)
    return run_passes(g, "triton", verify=True, max_fusions=budget)


FUSED = ("flash_attention", "fused_linear", "layernorm_kernel", "generated")


def test_the_fusion_budget_caps_fusions_and_bisects():
    full = sum(ops(_fusions(None))[k] for k in FUSED)
    none = ops(_fusions(0))
    assert not set(FUSED) & set(none), dict(none)
    one = ops(_fusions(1))
    assert sum(one[k] for k in FUSED) == 1, dict(one)
    # 2 attentions, 6 epilogues, 4 norm kernels, and the stem's generated kernel (which took the 5th norm)
    assert full == 2 + 6 + 4 + 1


def test_the_fusion_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("NNDSL_MAX_FUSIONS", "0")
    g = run_passes(graph(EXAMPLES / "mnist_cnn.nn"), "triton", verify=True)
    assert "fused_conv2d" not in ops(g)
    monkeypatch.setenv("NNDSL_MAX_FUSIONS", "many")
    with pytest.raises(NndslLoweringError, match="NNDSL_MAX_FUSIONS must be a whole number"):
        run_passes(graph(EXAMPLES / "mnist_cnn.nn"), "triton")


def test_run_passes_sets_its_own_budget_inside_an_outer_one():
    with fusion_budget(0):
        g = run_passes(graph(EXAMPLES / "mnist_cnn.nn"), "triton", max_fusions=None)
    assert ops(g)["fused_conv2d"] == 2
