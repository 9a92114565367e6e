"""Flash attention kernels vs the float64 reference: outputs and the gradients of q, k and v.

CPU tests run under TRITON_INTERPRET=1 (16x16 tiles), so every shape below is ragged against the
tiles; the CUDA tests at the bottom run at real sizes in bf16 / fp16 / fp32 when a GPU is present.
"""
from __future__ import annotations

import math

import pytest
import torch

from nndsl.kernels.attention import _attention_bwd, _attention_fwd, attention, attention_reference
from nndsl.kernels.dropout import dropout_mask
from tolerance import TOL, TOL_TF32, assert_close


def _qkv(B, H, Tq, Tk, D, *, device="cpu", dtype=torch.float32, mag=1.0):
    q = torch.randn(B, H, Tq, D, device=device, dtype=dtype) * mag
    k = torch.randn(B, H, Tk, D, device=device, dtype=dtype) * mag
    v = torch.randn(B, H, Tk, D, device=device, dtype=dtype)
    return q, k, v


def _check(q, k, v, causal=False, scale=None, tol=TOL[torch.float32], grad_tol=None, do=None,
           dropout_p=0.0, seed=None):
    """attention(q, k, v) and its q/k/v gradients against the reference run in float64. With dropout
    the reference gets the mask materialized by dropout_mask for the same seed."""
    grad_tol = tol if grad_tol is None else grad_tol
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = attention(q, k, v, causal=causal, scale=scale, dropout_p=dropout_p, seed=seed)
    do = torch.randn_like(out) if do is None else do
    grads = torch.autograd.grad(out, (q, k, v), do)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    shape = (*q.shape[:3], k.shape[2])
    mask = dropout_mask(seed, shape, dropout_p, q.device) if dropout_p else None
    ref = attention_reference(q64, k64, v64, causal=causal, scale=scale, dropout_p=dropout_p, mask=mask)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), do.double())
    assert_close("out", out, ref, tol)
    for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert_close(name, g, r, grad_tol)


# (B, H, Tq, Tk, D, causal): T ragged against 16-wide tiles, D not a power of two in half the cases
SHAPES = [
    (1, 1, 1, 1, 16, False),  # a single query and key
    (1, 2, 1, 1, 24, True),
    (2, 1, 7, 7, 24, True),
    (1, 2, 33, 33, 40, False),
    (2, 1, 33, 33, 64, True),
    (1, 1, 70, 70, 16, True),  # several diagonal and off-diagonal key blocks
    (1, 1, 70, 70, 40, False),
    (1, 1, 127, 127, 24, True),
    (1, 2, 17, 40, 40, False),  # Tq != Tk
    (2, 1, 40, 17, 24, False),
    (1, 1, 1, 33, 64, False),  # decode-like: one query, many keys
]


@pytest.mark.parametrize("B,H,Tq,Tk,D,causal", SHAPES)
def test_attention_matches_reference(B, H, Tq, Tk, D, causal):
    _check(*_qkv(B, H, Tq, Tk, D), causal=causal)


def test_attention_noncontiguous_inputs():
    # q, k as the transpose of [B, T, H, D] (the usual projection layout), v with the head dim strided,
    # and an output gradient that is itself a transposed view
    B, H, T, D = 2, 2, 33, 24
    q = torch.randn(B, T, H, D).transpose(1, 2)
    k = torch.randn(B, T, H, D).transpose(1, 2)
    v = torch.randn(B, H, D, T).transpose(2, 3)
    do = torch.randn(B, T, H, D).transpose(1, 2)
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous() or do.is_contiguous())
    _check(q, k, v, causal=True, do=do)
    _check(q, k, v, causal=False, do=do)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_custom_scale(causal):
    _check(*_qkv(1, 2, 33, 33, 40), causal=causal, scale=0.37)
    _check(*_qkv(1, 1, 17, 17, 16), causal=causal, scale=-0.2)  # any finite scale, even negative


def test_attention_large_magnitude_no_overflow():
    # logits of several hundred: a naive exp overflows fp32 at 88. fp32 logits of magnitude S carry
    # an absolute rounding error ~S * 2^-24 per term, which the softmax turns into a relative error of
    # the probabilities, hence 1e-3 instead of 1e-4.
    q, k, v = _qkv(1, 2, 33, 40, 16, mag=12.0)
    s = (q @ k.transpose(-2, -1)) / 4.0
    assert s.abs().max() > 200.0
    _check(q, k, v, tol=1e-3)
    q, k, v = _qkv(1, 1, 40, 40, 64, mag=8.0)
    _check(q, k, v, causal=True, tol=1e-3)


def test_attention_only_some_inputs_need_grad():
    # k, v without grad: the dK/dV kernel is skipped, dq must still be right
    q, k, v = _qkv(1, 2, 33, 20, 24)
    q.requires_grad_()
    out = attention(q, k, v)
    do = torch.randn_like(out)
    (dq,) = torch.autograd.grad(out, (q,), do)
    q64 = q.detach().double().requires_grad_()
    ref = attention_reference(q64, k.double(), v.double())
    (ref_dq,) = torch.autograd.grad(ref, (q64,), do.double())
    assert_close("dq", dq, ref_dq, TOL[torch.float32])


@pytest.mark.parametrize("causal", [False, True])
def test_launchers_write_every_element(causal):
    # NaN-poisoned output buffers (one of them a strided view): any unwritten element fails
    B, H, T, D = 2, 1, 37, 40
    q, k, v = _qkv(B, H, T, T, D)
    scale = 1.0 / math.sqrt(D)
    out = torch.full((B, T, H, D), float("nan")).transpose(1, 2)
    out, lse = _attention_fwd(q, k, v, causal, scale, out=out)
    ref = attention_reference(q.double(), k.double(), v.double(), causal=causal)
    assert_close("out", out, ref, TOL[torch.float32])
    s = (q.double() @ k.double().transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    assert_close("lse", lse, torch.logsumexp(s, -1).reshape(B * H, T), TOL[torch.float32])

    do = torch.randn_like(q)
    bufs = {name: torch.full_like(q, float("nan")) for name in ("dq", "dk", "dv")}
    dq, dk, dv = _attention_bwd(do, q, k, v, out, lse, causal, scale, **bufs)
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    refs = torch.autograd.grad(attention_reference(q64, k64, v64, causal=causal), (q64, k64, v64), do.double())
    for name, g, r in zip(("dq", "dk", "dv"), (dq, dk, dv), refs):
        assert g is bufs[name]
        assert_close(name, g, r, TOL[torch.float32])


# (B, H, Tq, Tk, D, causal, p): ragged against the 16-wide tiles, Tq != Tk, causal and not
DROPOUT_CASES = [
    (2, 3, 37, 37, 16, True, 0.1),
    (2, 3, 37, 37, 24, False, 0.5),
    (1, 2, 37, 45, 24, False, 0.1),
    (1, 2, 45, 45, 16, True, 0.5),
]


@pytest.mark.parametrize("B,H,Tq,Tk,D,causal,p", DROPOUT_CASES)
def test_attention_dropout_matches_reference(B, H, Tq, Tk, D, causal, p):
    """Forward and both backward kernels drop by the mask dropout_mask names for the seed."""
    _check(*_qkv(B, H, Tq, Tk, D), causal=causal, dropout_p=p, seed=4321)


def test_attention_dropout_only_q_needs_grad():
    q, k, v = _qkv(1, 2, 37, 20, 24)
    q.requires_grad_()
    out = attention(q, k, v, dropout_p=0.3, seed=9)
    do = torch.randn_like(out)
    (dq,) = torch.autograd.grad(out, (q,), do)
    q64 = q.detach().double().requires_grad_()
    ref = attention_reference(q64, k.double(), v.double(), dropout_p=0.3, seed=9)
    (ref_dq,) = torch.autograd.grad(ref, (q64,), do.double())
    assert_close("out", out, ref, TOL[torch.float32])
    assert_close("dq", dq, ref_dq, TOL[torch.float32])


def test_attention_dropout_zero_is_unchanged():
    """p = 0: the very same numbers as a call without dropout, whatever the seed, and no draw from torch."""
    q, k, v = _qkv(1, 2, 37, 37, 24)
    state = torch.get_rng_state()
    want = attention(q, k, v, causal=True)
    assert torch.equal(attention(q, k, v, causal=True, dropout_p=0.0, seed=5), want)
    assert torch.equal(attention(q, k, v, causal=True, dropout_p=0.0), want)
    assert torch.equal(torch.get_rng_state(), state)


def test_attention_dropout_seeds():
    q, k, v = _qkv(1, 1, 37, 37, 16)
    out = attention(q, k, v, dropout_p=0.5, seed=1)
    assert torch.equal(out, attention(q, k, v, dropout_p=0.5, seed=1))
    assert not torch.allclose(out, attention(q, k, v, dropout_p=0.5, seed=2))
    torch.manual_seed(3)
    drawn = attention(q, k, v, causal=True, dropout_p=0.5)
    torch.manual_seed(3)
    assert torch.equal(attention(q, k, v, causal=True, dropout_p=0.5), drawn)


def test_attention_dropout_errors():
    q, k, v = _qkv(1, 1, 8, 8, 16)
    with pytest.raises(ValueError, match="dropout_p must be in"):
        attention(q, k, v, dropout_p=1.5)
    with pytest.raises(ValueError, match="seed must be an int"):
        attention(q, k, v, dropout_p=0.5, seed="x")
    with pytest.raises(ValueError, match="mask must have the probabilities' shape"):
        attention_reference(q, k, v, dropout_p=0.5, mask=torch.ones(1, 1, 8, 9, dtype=torch.bool))


def test_attention_half_on_cpu_falls_back_to_reference():
    # the interpreter cannot run bf16 / fp16 tiles: CPU half inputs take the reference path
    q, k, v = (t.to(torch.bfloat16) for t in _qkv(1, 2, 9, 9, 16))
    out = attention(q, k, v, causal=True)
    assert out.dtype == torch.bfloat16
    assert_close("out", out, attention_reference(q.double(), k.double(), v.double(), causal=True),
                 TOL[torch.bfloat16])


def test_reference_matches_torch_sdpa():
    q, k, v = (t.double() for t in _qkv(2, 2, 9, 9, 16))
    for causal in (False, True):
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        assert_close("reference", attention_reference(q, k, v, causal=causal), want, 1e-10)


@pytest.mark.parametrize("shapes,kwargs,words", [
    (((1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 8, 8)), {}, ["q", "(1, 1, 8, 8)", "[16, 256]"]),  # D too small
    (((1, 1, 8, 300), (1, 1, 8, 300), (1, 1, 8, 300)), {}, ["q", "(1, 1, 8, 300)"]),  # D too large
    (((1, 1, 8, 16), (1, 1, 8, 24), (1, 1, 8, 24)), {}, ["k", "(1, 1, 8, 24)"]),  # head dims differ
    (((1, 2, 8, 16), (1, 1, 8, 16), (1, 1, 8, 16)), {}, ["k", "(1, 1, 8, 16)"]),  # heads differ
    (((1, 1, 8, 16), (1, 1, 8, 16), (1, 1, 9, 16)), {}, ["v", "(1, 1, 9, 16)"]),  # Tk differs
    (((1, 1, 8, 16), (1, 1, 9, 16), (1, 1, 9, 16)), {"causal": True}, ["causal", "(1, 1, 8, 16)"]),
    (((1, 8, 16), (1, 1, 8, 16), (1, 1, 8, 16)), {}, ["q", "(1, 8, 16)"]),  # rank 3
    (((1, 1, 0, 16), (1, 1, 8, 16), (1, 1, 8, 16)), {}, ["q", "(1, 1, 0, 16)"]),  # empty
    (((1, 1, 8, 16), (1, 1, 8, 16), (1, 1, 8, 16)), {"scale": float("nan")}, ["scale"]),
])
def test_attention_value_errors(shapes, kwargs, words):
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError) as err:
        attention(q, k, v, **kwargs)
    for word in words:
        assert word in str(err.value), f"expected {word!r} in {str(err.value)!r}"


def test_attention_dtype_errors():
    q, k, v = _qkv(1, 1, 8, 8, 16)
    with pytest.raises(ValueError, match="q has dtype torch.float64"):
        attention(q.double(), k, v)
    with pytest.raises(ValueError, match="k has dtype torch.int64"):
        attention(q, k.long(), v)
    with pytest.raises(ValueError, match="same dtype"):
        attention(q, k, v.half())


# ------------------------------------------------------------------------------------------ CUDA
# Output tolerance per dtype: fp32 runs its dots in tf32 (10-bit mantissa) like the rest of the
# kernels. Gradients get twice the output tolerance: the backward rounds P and dS to the input dtype
# before its dots, two roundings more than the forward.
CUDA_TOL = {torch.float32: 2 * TOL_TF32, torch.float16: TOL[torch.float16], torch.bfloat16: TOL[torch.bfloat16]}
CUDA_SHAPES = [
    (2, 4, 1000, 1000, 64, True),
    (2, 4, 1000, 1000, 64, False),
    (1, 8, 777, 1531, 128, False),
    (2, 3, 513, 513, 80, True),
    (1, 2, 300, 300, 256, True),
    (4, 2, 1, 1024, 128, False),
]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("B,H,Tq,Tk,D,causal", CUDA_SHAPES)
def test_attention_cuda(B, H, Tq, Tk, D, causal, dtype):
    q, k, v = _qkv(B, H, Tq, Tk, D, device="cuda", dtype=dtype)
    tol = CUDA_TOL[dtype]
    _check(q, k, v, causal=causal, tol=tol, grad_tol=2 * tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("B,H,Tq,Tk,D,causal", [(4, 6, 256, 256, 64, True), (1, 4, 777, 1031, 128, False)])
def test_attention_cuda_dropout(B, H, Tq, Tk, D, causal, dtype):
    tol = CUDA_TOL[dtype]
    _check(*_qkv(B, H, Tq, Tk, D, device="cuda", dtype=dtype), causal=causal, tol=tol, grad_tol=2 * tol,
           dropout_p=0.2, seed=77)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_attention_cuda_noncontiguous_large_magnitude():
    B, H, T, D = 2, 8, 1100, 64
    q = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) * 20
    k = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) * 20
    v = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    out = attention(q, k, v, causal=True)
    assert torch.isfinite(out).all()
    ref = attention_reference(q.double(), k.double(), v.double(), causal=True)
    # logits in the thousands: bf16 inputs are exact, the fp32 logits carry ~|s| * 2^-24 error
    assert_close("out", out, ref, 2 * TOL[torch.bfloat16])


def test_output_and_gradients_follow_the_memory_order_of_q_k_v():
    """q, k, v read as [B, H, T, E] views of one [B, T, 3·H·E] projection: the output and the
    gradients are laid out [B, T, H, E] too, so the model's transpose + reshape back to [B, T, D]
    is a view (no copy kernel) in forward and in backward; the values are unchanged."""
    B, T, H, E = 2, 13, 3, 16
    qkv = torch.randn(B, T, 3 * H * E, requires_grad=True)
    q, k, v = (t.reshape(B, T, H, E).transpose(1, 2) for t in qkv.split(H * E, dim=-1))
    y = attention(q, k, v, causal=True)
    assert y.transpose(1, 2).is_contiguous(), y.stride()  # [B, T, H, E] in memory
    y.transpose(1, 2).reshape(B, T, H * E).view(B, T, H * E)  # a view: .view would raise otherwise
    grads = torch.autograd.grad(y.sum() * 1.0, (q, k, v))
    assert all(g.transpose(1, 2).is_contiguous() for g in grads), [g.stride() for g in grads]
    ref = attention_reference(*(t.detach().double().requires_grad_() for t in (q, k, v)), True)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-5)
