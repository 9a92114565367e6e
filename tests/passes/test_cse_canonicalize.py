"""canonicalize (bit-exact identities, one spelling for axes) and cse (pure ops only)."""
from __future__ import annotations

import pytest
import torch

from nndsl.backend.torch_codegen import lower
from nndsl.passes import canonicalize, cse, dead_code_elimination, run_passes

from .kit import apply, deep_ops, graph, ops

ONE = """model M(x: f32[B, T, N], N: int = 5) -> f32[B, T, N] {
    return %s
}"""


@pytest.mark.parametrize("expr,left", [
    ("x * 1 + x / 1", {"add": 1}),
    ("x ** 1 - 0", {}),
    ("-(-x)", {}),
    ("cast(x, \"f32\")", {}),
    ("x.transpose(1, 2).transpose(2, 1) * 2.0", {"mul_s": 1}),
    ("reshape(x, [B, T, N]) * 3.0", {"mul_s": 1}),
])
def test_identities_vanish_bit_exactly(expr, left):
    g0 = graph(ONE % expr)
    g1 = apply(graph(ONE % expr), canonicalize, dead_code_elimination)
    assert dict(ops(g1)) == left
    m0, _ = lower(g0)
    m1, _ = lower(g1)
    x = torch.randn(3, 4, 5)
    assert torch.equal(m0(x), m1(x)), "canonicalize must be bit-exact"


def test_axes_become_negative_and_sorted():
    g = apply(graph(ONE % "softmax(x, dim=2) + sum(x, dim=[2, 0], keepdim=true) + x.transpose(2, 1).transpose(1, 2)"),
              canonicalize)
    attrs = {n.op: n.attrs for n in g.nodes}
    assert attrs["softmax"]["dim"] == -1
    assert tuple(attrs["sum"]["dims"]) == (-3, -1)
    assert "transpose" not in attrs  # the same swap twice is the identity


def test_leaves_non_identities_alone():
    for expr in ("x * 2.0", "x - 1", "x.transpose(0, 1).transpose(1, 2).reshape([B, T, N])"):
        g = graph(ONE % expr)
        before = [(n.op, dict(n.attrs)) for n in g.nodes]
        g = apply(g, canonicalize)
        assert [n.op for n in g.nodes] == [op for op, _ in before], expr


def test_cse_merges_pure_duplicates_in_either_operand_order():
    g = apply(graph(ONE % "relu(x) * tanh(x + 1.0) + tanh(1.0 + x) * relu(x)"), canonicalize, cse,
              dead_code_elimination)
    assert dict(ops(g)) == {"relu": 1, "add_s": 1, "tanh": 1, "mul": 1, "add": 1}


def test_cse_never_merges_dropouts_or_random_attention():
    src = """model M(q: f32[B, H, T, E], E: int = 16) -> f32[B, H, T, E] {
    a = dropout(q, 0.5) + dropout(q, 0.5)
    b = attention(q, q, q, dropout=0.1) + attention(q, q, q, dropout=0.1)
    c = attention(q, q, q) + attention(q, q, q)
    return a + b + c
}"""
    g = run_passes(graph(src), "triton", verify=True)
    assert ops(graph(src))["attention"] == 4
    assert deep_ops(g)["dropout"] == 2, "two dropouts are two draws: never one"
    kinds = [n.attrs["dropout"] for n in g.nodes if n.op == "flash_attention"]
    assert sorted(kinds) == [0.0, 0.1, 0.1], "the two random attentions stay, the two plain ones merge"


def test_rotary_tables_are_built_once_for_the_whole_model():
    src = """block Rot(x: f32[B, T, D], heads: int) -> f32[B, T, D] {
        q = rope(x.reshape([B, T, heads, D / heads]).transpose(1, 2))
        k = rope((x * 2.0).reshape([B, T, heads, D / heads]).transpose(1, 2))
        return (q + k).transpose(1, 2).reshape([B, T, D])
    }
    model M(x: f32[B, T, D], D: int = 16, L: int = 3) -> f32[B, T, D] {
        repeat L as blocks {
            x = Rot(x, 2)
        }
        return x
    }"""
    g0 = graph(src)
    g = run_passes(graph(src), "triton", verify=True)
    assert ops(g0)["rope_angles"] == 6 and ops(g)["rope_angles"] == 1
    m0, _ = lower(g0)
    m1, _ = lower(g)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(m1(x), m0(x), rtol=0, atol=0)
