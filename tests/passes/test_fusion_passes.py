"""raise, fuse_epilogues and claim, each alone on small sources: what they fuse, what they must
leave alone, and the reason they log for it."""
from __future__ import annotations

import pytest

from nndsl.passes import canonicalize, claim, cse, dead_code_elimination, fuse_epilogues, raise_stdlib

from .kit import apply, graph, ops, reasons

ATTN = """model M(q: {dt}[B, H, T, E], k: {dt}[B, H, T, E], v: {dt}[B, H, T, E], m: {dt}[T, T],
          E: int = 16) -> {dt}[B, H, T, E] {{
    {body}
}}"""


def attn(body: str, dt: str = "f32", **hp):
    return graph(ATTN.format(dt=dt, body=body), **hp)


PREP = (dead_code_elimination, canonicalize, cse)


# ------------------------------------------------------------------------------------------ raise
def test_raise_turns_spelled_attention_into_attention_with_its_scale_and_mask():
    g = apply(attn("return softmax(q @ k.transpose(-2, -1) * 0.5 + causal_mask(T), dim=-1) @ v"), *PREP,
              raise_stdlib, dead_code_elimination)
    (n,) = g.nodes
    assert n.op == "attention" and n.attrs == {"causal": True, "scale": 0.5, "dropout": 0.0}
    assert [v.name for v in n.inputs] == ["q", "k", "v"]
    assert n.region.ops() == ["transpose", "matmul", "mul_s", "causal_mask", "add", "softmax", "matmul"]


def test_raise_leaves_a_mask_that_is_not_causal_and_says_why():
    g = apply(attn("return softmax(q @ k.transpose(-2, -1) + m, dim=-1) @ v"), *PREP, raise_stdlib)
    assert "attention" not in ops(g) and ops(g)["softmax"] == 1
    assert reasons(g) == ["mask is not causal"]


def test_raise_leaves_attention_whose_scores_are_used_elsewhere():
    body = "s = q @ k.transpose(-2, -1)\n    return softmax(s, dim=-1) @ v + sum(s, dim=-1, keepdim=true)"
    g = apply(attn(body), *PREP, raise_stdlib)
    assert "attention" not in ops(g)
    assert reasons(g) == ["the attention scores are used elsewhere"]


def test_raise_leaves_attention_whose_weights_are_used_elsewhere():
    body = "p = softmax(q @ k.transpose(-2, -1) / 4.0, dim=-1)\n    return p @ v + sum(p, dim=-1, keepdim=true)"
    g = apply(attn(body), *PREP, raise_stdlib)
    assert "attention" not in ops(g)
    assert reasons(g) == ["the attention weights (softmax) are used elsewhere"]


def test_raise_leaves_a_softmax_over_another_axis():
    g = apply(attn("return softmax(q @ k.transpose(-2, -1), dim=2) @ v"), *PREP, raise_stdlib)
    assert "attention" not in ops(g)


def test_raise_leaves_a_norm_over_another_axis_and_a_shift_by_the_wrong_max():
    src = """model M(x: f32[B, T, N], N: int = 6) -> f32[B, T, N] {
    mu = mean(x, dim=1, keepdim=true)
    a = (x - mu) / sqrt(mean((x - mu) ** 2, dim=1, keepdim=true) + 1e-5)
    e = exp(x - max(x, dim=1, keepdim=true))
    return a + e / sum(e, dim=-1, keepdim=true)
}"""
    g = apply(graph(src), *PREP, raise_stdlib)
    assert "layernorm" not in ops(g)
    assert ops(g)["softmax"] == 1 and ops(g)["max"] == 1, "the shift by a max over dim 1 must stay"


# ------------------------------------------------------------------------------- fuse_epilogues
MLP = """model M(x: {dt}[B, N], w: {dt}[N, N], b: {dt}[N], N: int = 8) -> {dt}[B, N] {{
    {body}
}}"""


def mlp(body: str, dt: str = "f32"):
    return apply(graph(MLP.format(dt=dt, body=body)), *PREP, fuse_epilogues, dead_code_elimination)


def test_fuses_linear_gelu_dropout_and_residual_into_one_node():
    g = mlp("return x + dropout(gelu(linear(x, 8), approximate=\"tanh\"), 0.1)")
    (n,) = [n for n in g.nodes if n.op != "param"]
    assert n.op == "fused_linear"
    assert {k: n.attrs[k] for k in ("activation", "dropout", "bias", "residual")} == \
        {"activation": "gelu_tanh", "dropout": 0.1, "bias": True, "residual": True}
    assert n.inputs[-1] is g.inputs[0]
    assert n.region.ops() == ["linear", "gelu", "dropout", "add"]


def test_fuses_matmul_bias_relu():
    g = mlp("return relu(x @ w + b)")
    (n,) = g.nodes
    assert n.op == "fused_matmul" and n.attrs["bias"] and n.attrs["activation"] == "relu"
    assert n.inputs == [g.inputs[0], g.inputs[1], g.inputs[2]]


def test_fuses_a_bias_added_after_a_linear_without_one():
    g = mlp("return tanh(linear(x, 8, bias=false) + b)")
    (n,) = [n for n in g.nodes if n.op != "param"]
    assert n.op == "fused_linear" and n.attrs["bias"] and n.attrs["activation"] == "tanh"
    assert n.inputs[2] is g.inputs[2]


def test_leaves_a_pre_activation_value_used_elsewhere():
    g = mlp("z = x @ w\n    return relu(z) + z")
    assert ops(g)["relu"] == 1 and "pre-activation value used elsewhere" in reasons(g)


def test_leaves_the_residual_when_the_dropout_output_has_two_users():
    g = mlp("d = dropout(x @ w, 0.2)\n    return (x + d) * d")
    assert ops(g)["add"] == 1, "the residual add must stay: d is read twice"
    fused = [n for n in g.nodes if n.op == "fused_matmul"]
    assert len(fused) == 1 and not fused[0].attrs["residual"]
    assert "dropout output has two users" in reasons(g)


def test_never_moves_a_dropout_past_another_random_op():
    g = mlp("return dropout(x @ w, 0.2) + dropout(x, 0.3)")
    assert ops(g)["add"] == 1 and ops(g)["dropout"] == 1
    assert "another random op runs between the dropout and the residual add" in reasons(g)


def test_leaves_fp64_and_broadcast_residuals():
    assert reasons(mlp("return relu(x @ w)", dt="f64")) == ["fp64 input"]
    g = mlp("return x @ w + b.reshape([1, N])")
    assert "fused_matmul" not in ops(g) and any("is broadcast" in r for r in reasons(g))


def test_fuses_conv2d_with_bias_and_activation():
    src = """model M(x: f32[B, 3, 9, 9]) -> f32[B, 4, 7, 7] {
    return silu(conv2d(x, 4, kernel=3))
}"""
    g = apply(graph(src), *PREP, fuse_epilogues, dead_code_elimination)
    (n,) = [n for n in g.nodes if n.op != "param"]
    assert n.op == "fused_conv2d" and n.attrs["activation"] == "silu" and len(n.inputs) == 3


# -------------------------------------------------------------------------------------------- claim
def claimed(g):
    return apply(g, *PREP, raise_stdlib, claim)


def test_claims_attention_norms_and_softmax():
    g = claimed(attn("return attention(q, k, v, causal=true) + softmax(q, dim=-1) + log_softmax(q, dim=3)"))
    assert {"flash_attention": 1, "softmax_kernel": 1, "log_softmax_kernel": 1} .items() <= ops(g).items()
    src = """model M(x: f32[B, T, N], N: int = 6) -> f32[B, T, N] {
    return layernorm(x) + rmsnorm(x)
}"""
    assert {"layernorm_kernel": 1, "rmsnorm_kernel": 1}.items() <= ops(claimed(graph(src))).items()


@pytest.mark.parametrize("body,dt,hp,reason", [
    ("return attention(q, k, v)", "f32", {"E": 320}, "head dim 320 > 256"),
    ("return attention(q, k, v)", "f32", {"E": 8}, "head dim 8 < 16"),
    ("return attention(q, k, v)", "f64", {}, "fp64 input"),
    ("return softmax(q, dim=1)", "f32", {}, "softmax over dim 1, not the last"),
    ("return log_softmax(q, dim=-2)", "f32", {}, "log_softmax over dim 2, not the last"),
    ("return softmax(q, dim=-1)", "f64", {}, "fp64 input"),
])
def test_what_fails_a_kernel_guard_stays_and_says_why(body, dt, hp, reason):
    g = claimed(attn(body, dt, **hp))
    assert not any(n.op.endswith("_kernel") or n.op == "flash_attention" for n in g.nodes)
    assert reasons(g) == [reason]


def test_claim_leaves_rank_3_attention():
    src = """model M(q: f32[B, T, E], E: int = 32) -> f32[B, T, E] {
    return attention(q, q, q)
}"""
    g = claimed(graph(src))
    assert "flash_attention" not in ops(g) and reasons(g) == ["rank-3 q f32[B, T, 32] (the kernel takes [B, H, T, E])"]
