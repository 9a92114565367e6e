"""attention with a mask and grouped-query heads, and rope, against attention and rotary embeddings
written out by hand in float64 (values and gradients); the Triton pipeline's claim leaves both
attention forms to PyTorch and says why."""
from __future__ import annotations

import math

import pytest
import torch
from ops.opcheck import call, check_grad, fails, new, run, shape
from passes.kit import apply, graph, ops, reasons

from nndsl.errors import NndslShapeError, NndslTypeError
from nndsl.passes import canonicalize, claim, cse, dead_code_elimination, raise_stdlib


def ref_attention(q, k, v, mask=None, causal=False, scale=None):
    """softmax(q kᵀ · scale, masked) v, with k/v heads repeated for grouped-query attention."""
    rep = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
    s = q @ k.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def pad_mask(B: int, T: int) -> torch.Tensor:
    """[B, 1, 1, T] bool: each sequence keeps a random prefix (at least position 0)."""
    lens = torch.randint(1, T + 1, (B,))
    return (torch.arange(T)[None, :] < lens[:, None])[:, None, None, :]


@pytest.mark.parametrize("hkv", [6, 3, 2, 1])
def test_grouped_query_attention(hkv):
    specs = {"q": "f32[B, 6, T, 4]", "k": f"f32[B, {hkv}, S, 4]", "v": f"f32[B, {hkv}, S, 3]"}
    check_grad(specs, lambda b, q, k, v: call(b, "attention", q, k, v),
               lambda q, k, v, P: ref_attention(q, k, v), {"B": 2, "T": 5, "S": 7})


def test_bool_mask_and_float_mask():
    specs = {"q": "f32[B, 3, T, 4]", "k": "f32[B, 3, S, 4]", "v": "f32[B, 3, S, 4]", "m": "bool[B, 1, 1, S]"}
    xs = [torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.randn(2, 3, 7, 4, dtype=torch.float64),
          torch.randn(2, 3, 7, 4, dtype=torch.float64), pad_mask(2, 7)]
    check_grad(specs, lambda b, q, k, v, m: call(b, "attention", q, k, v, mask=m, scale=0.3),
               lambda q, k, v, m, P: ref_attention(q, k, v, m, scale=0.3), {"B": 2, "T": 5, "S": 7}, inputs=xs)
    specs["m"] = "f32[T, S]"
    check_grad(specs, lambda b, q, k, v, m: call(b, "attention", q, k, v, mask=m),
               lambda q, k, v, m, P: ref_attention(q, k, v, m), {"B": 2, "T": 5, "S": 7})


@pytest.mark.parametrize("mdt", ["bool", "f32"])
def test_causal_and_mask_together_with_grouped_heads(mdt):
    specs = {"q": "f32[B, 4, T, 8]", "k": "f32[B, 2, T, 8]", "v": "f32[B, 2, T, 8]", "m": f"{mdt}[B, 1, 1, T]"}
    xs = [torch.randn(3, 4, 7, 8, dtype=torch.float64), torch.randn(3, 2, 7, 8, dtype=torch.float64),
          torch.randn(3, 2, 7, 8, dtype=torch.float64), pad_mask(3, 7)]
    if mdt == "f32":
        xs[3] = torch.where(xs[3], 0.0, -1e4).double() + torch.rand(3, 1, 1, 7, dtype=torch.float64)
    check_grad(specs, lambda b, q, k, v, m: call(b, "attention", q, k, v, causal=True, mask=m),
               lambda q, k, v, m, P: ref_attention(q, k, v, m, causal=True), {"B": 3, "T": 7}, inputs=xs)


def test_attention_mask_and_head_errors():
    q, k = "f32[B, 4, T, 8]", "f32[B, 4, S, 8]"
    assert shape("attention", [q, k, k, "bool[S]"]) == "f32[B, 4, T, 8]"
    assert "does not broadcast to the scores [B, 4, T, S]" in fails("attention", [q, k, k, "bool[T, T]"])
    assert "does not broadcast" in fails("attention", [q, k, k, "bool[1, B, 4, T, S]"])
    msg = fails("attention", [q, k, k, "i64[S]"], names=[None, None, None, "pad"], kind=NndslTypeError)
    assert msg == "attention: the mask must be bool (true = attend) or f32 (added to the scores), got pad: i64[S]"
    assert "k/v heads that divide q's" in fails("attention", [q, "f32[B, 3, S, 8]", "f32[B, 3, S, 8]"])
    assert "batch dims of k and v must match" in fails("attention", [q, "f32[B, 2, S, 8]", "f32[B, 4, S, 8]"])
    b, (qv,) = new(q=q)
    assert call(b, "attention", qv, qv, qv, mask=None).producer.inputs == [qv, qv, qv]


def ref_rope(x, base=10000.0):
    """The rotate-half rotary embedding written out: pairs (i, i + E/2) turn by t / base^(2i/E)."""
    T, E = x.shape[-2], x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, E, 2, dtype=torch.float64) / E)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., :E // 2], x[..., E // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


@pytest.mark.parametrize("spec,base", [("f32[B, 3, T, 8]", 10000.0), ("f32[T, 6]", 500.0),
                                       ("f32[B, 2, T, 2]", 10.0)])
def test_rope(spec, base):
    check_grad({"x": spec}, lambda b, x: call(b, "rope", x, base=base), lambda x, P: ref_rope(x, base),
               {"B": 2, "T": 9})


def test_rope_scores_depend_on_relative_position_only():
    b, (q, k) = new(q="f32[1, 1, T, 8]", k="f32[1, 1, T, 8]")
    rq, rk = call(b, "rope", q), call(b, "rope", k)
    one_q, one_k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    xs = [one_q.expand(1, 1, 12, 8).clone(), one_k.expand(1, 1, 12, 8).clone()]
    gq, gk = run(b.graph, xs, {"T": 12}, outputs=[rq, rk])
    s = gq[0, 0] @ gk[0, 0].T  # s[t, u] depends on t - u only
    assert torch.allclose(s[3, 1], s[10, 8]) and torch.allclose(s[2, 7], s[4, 9])
    assert not torch.allclose(s[3, 1], s[3, 2])


def test_rope_errors():
    b, (x, i) = new(x="f32[B, T, 7]", i="i64[B, T, 8]")
    with pytest.raises(NndslShapeError, match="rope needs a fixed, even last dim"):
        call(b, "rope", x)
    with pytest.raises(NndslTypeError, match=r'rope expects a floating-point input, got i: i64\[B, T, 8\]'):
        call(b, "rope", i)


# ------------------------------------------------------------------------------ the Triton pipeline
SRC = """model M(q: f32[B, 4, T, 16], k: f32[B, {hkv}, T, 16], m: bool[B, 1, 1, T]) -> f32[B, 4, T, 16] {{
    return {body}
}}"""


@pytest.mark.parametrize("hkv,body,reason", [
    (4, "attention(q, k, k, mask=m)", "an explicit mask (the kernel takes none, or the causal one)"),
    (2, "attention(q, k, k, causal=true)", "grouped-query attention: q has 4 heads, k and v 2"),
])
def test_claim_leaves_masked_and_grouped_attention_to_pytorch(hkv, body, reason):
    g = apply(graph(SRC.format(hkv=hkv, body=body)), dead_code_elimination, canonicalize, cse, raise_stdlib, claim)
    assert ops(g)["attention"] == 1 and "flash_attention" not in ops(g)
    assert reasons(g) == [reason]
    g = apply(graph(SRC.format(hkv=4, body="attention(q, k, k)")), claim)
    assert "flash_attention" in ops(g)  # the plain form is still claimed
