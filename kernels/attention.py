"""Attention: softmax(q kᵀ · scale [+ causal mask]) v, flash-attention style.

Forward (FlashAttention-2): one program per (query block, batch·head) walks the key blocks with an
online softmax — running row max m, running row sum l, an accumulator rescaled by exp2(m_old - m_new)
— so no Tq×Tk tensor ever exists. Scores live in base 2: log2(e) is folded into the scale and exp2
replaces exp. Causal programs skip the key blocks above the diagonal and mask only the diagonal
blocks; non-causal programs mask only the ragged last key block. Each program stores its O rows and
their natural-log log-sum-exp (fp32), which is all the backward needs besides q, k, v.

Backward (recomputation, no atomics, deterministic):
  1. _attn_bwd_delta  delta = rowsum(dO * O)                                         [B·H, Tq] fp32
  2. _attn_bwd_dkdv   one program per key block walks the query blocks and recomputes
                      Pᵀ = exp2((K Qᵀ·s - lse)·log2e); dV += Pᵀ dO; dSᵀ = Pᵀ(V dOᵀ - delta); dK += s·dSᵀ Q
  3. _attn_bwd_dq     one program per query block walks the key blocks and recomputes
                      P; dS = P(dO Vᵀ - delta); dQ += s·dS K
Dropout on P (DROPOUT constexpr, off at p = 0), as FlashAttention does it: the forward drops entries of
P after their row sum l (the normalizer is the un-dropped softmax's) and before P V, and scales O by
1/(1-p); both backward kernels regenerate the same keep bits (`dropout.dropout_keep` on the [B·H·Tq, Tk]
view of P: counter (key, (b·H + h)·Tq + query), independent of the tiles) and use dV += (P∘Z)ᵀ dO and
dP = (dO Vᵀ)∘Z with Z = keep/(1-p); delta = rowsum(dO * O) holds unchanged. The mask is never stored.
Any head dim D in [16, 256] works: tiles are padded to BLOCK_D = next_power_of_2(D) with masks on the
d axis (compiled out when D is a power of two). Inputs keep their strides (no copies).
"""
from __future__ import annotations

import contextlib
import math

import torch

from ._common import HAS_TRITON, check_float, check_same, interpreting, use_triton
from .dropout import check_dropout, check_index_range, dropout_mask, threshold

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .dropout import dropout_keep
else:  # pragma: no cover - without Triton the module still imports and only the reference runs
    import types

    triton = types.SimpleNamespace(jit=lambda fn=None, **kw: fn if fn is not None else (lambda f: f), autotune=lambda **kw: (lambda fn: fn),
                                   Config=lambda *a, **kw: None)

LOG2E = 1.4426950408889634  # the kernels spell it (and ln 2) as literals: Triton globals must be constexpr
MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 256


# ----------------------------------------------------------------------------------------- kernels
@triton.jit
def _load(
    ptrs,  # pointer tile
    a,  # first index grid (broadcastable to the tile)
    n_a,  # bound on a
    b,  # second index grid
    n_b,  # bound on b
    MASK_A: tl.constexpr,  # check a < n_a
    MASK_B: tl.constexpr,  # check b < n_b
):
    if MASK_A and MASK_B:
        x = tl.load(ptrs, mask=(a < n_a) & (b < n_b), other=0.0)
    elif MASK_A:
        x = tl.load(ptrs, mask=a < n_a, other=0.0)
    elif MASK_B:
        x = tl.load(ptrs, mask=b < n_b, other=0.0)
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def _attn_fwd_inner(
    acc,  # running output accumulator [BLOCK_M, BLOCK_D] fp32
    l_i,  # running row sum of exp2 [BLOCK_M] fp32
    m_i,  # running row max (base-2 scaled scores) [BLOCK_M] fp32
    q,  # query tile [BLOCK_M, BLOCK_D]
    k_base,  # K at (b, h, 0, 0)
    v_base,  # V at (b, h, 0, 0)
    stride_kt,  # K stride over keys
    stride_kd,  # K stride over head dim
    stride_vt,  # V stride over keys
    stride_vd,  # V stride over head dim
    offs_m,  # query rows of this program [BLOCK_M]
    offs_d,  # head-dim lanes [BLOCK_D]
    lo,  # first key of the range (multiple of BLOCK_N)
    hi,  # end of the key range
    T_K,  # number of keys
    qk_scale,  # scale * log2(e)
    seed,  # dropout: Philox key
    drop_threshold,  # dropout: ⌊p·2³¹⌋
    row0,  # dropout: row of this program's first query in P's [B·H·Tq, Tk] view
    HEAD_DIM: tl.constexpr,  # true head dim
    CAUSAL: tl.constexpr,  # mask keys after the query
    MASK: tl.constexpr,  # this range holds a ragged or diagonal block: mask it
    PAD_D: tl.constexpr,  # HEAD_DIM < BLOCK_D: mask the head dim
    DROPOUT: tl.constexpr,  # drop entries of P (after the row sum, before P V)
    BLOCK_M: tl.constexpr,  # queries of the program
    BLOCK_N: tl.constexpr,  # keys per step
):
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_n0
        kT = _load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None] * stride_kd,
                   offs_n[None, :], T_K, offs_d[:, None], HEAD_DIM, MASK, PAD_D)
        qk = tl.dot(q, kT) * qk_scale
        if MASK:
            keep = offs_n[None, :] < T_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.exp2(qk - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if DROPOUT:
            p = tl.where(dropout_keep(seed, row0, start_n, drop_threshold, BLOCK_M, BLOCK_N), p, 0.0)
        v = _load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                  offs_n[:, None], T_K, offs_d[None, :], HEAD_DIM, MASK, PAD_D)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, l_i, m_i


@triton.jit(do_not_specialize=["seed", "drop_threshold"])
def _attn_fwd(
    Q,  # queries [B, H, Tq, D]
    K,  # keys [B, H, Tk, D]
    V,  # values [B, H, Tk, D]
    O,  # out: [B, H, Tq, D]
    LSE,  # out: natural log-sum-exp per row [B*H, Tq] fp32
    stride_qb, stride_qh, stride_qt, stride_qd,  # Q strides
    stride_kb, stride_kh, stride_kt, stride_kd,  # K strides
    stride_vb, stride_vh, stride_vt, stride_vd,  # V strides
    stride_ob, stride_oh, stride_ot, stride_od,  # O strides
    H,  # number of heads
    T_Q,  # number of queries
    T_K,  # number of keys
    qk_scale,  # scale * log2(e)
    seed,  # dropout: Philox key
    drop_threshold,  # dropout: ⌊p·2³¹⌋
    drop_scale,  # dropout: 1 / (1 - p)
    SEQ_BUCKET,  # autotune key only: next power of two of max(Tq, Tk)
    HEAD_DIM: tl.constexpr,  # true head dim
    CAUSAL: tl.constexpr,  # causal mask (Tq == Tk)
    PAD_D: tl.constexpr,  # HEAD_DIM < BLOCK_D
    DROPOUT: tl.constexpr,  # dropout on P
    BLOCK_M: tl.constexpr,  # queries per program
    BLOCK_N: tl.constexpr,  # keys per step (divides BLOCK_M)
    BLOCK_D: tl.constexpr,  # next_power_of_2(HEAD_DIM)
):
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # longest causal rows start first
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    start_m = pid_m * BLOCK_M
    row0 = pid_bh * T_Q + start_m  # dropout row of the first query
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd
    q = _load(q_ptrs, offs_m[:, None], T_Q, offs_d[None, :], HEAD_DIM, True, PAD_D)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    if CAUSAL:
        # keys [0, start_m) lie wholly below the diagonal; keys past the block are skipped
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_kd, stride_vt,
                                        stride_vd, offs_m, offs_d, 0, start_m, T_K, qk_scale, seed, drop_threshold,
                                        row0, HEAD_DIM, CAUSAL, False, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_kd, stride_vt,
                                        stride_vd, offs_m, offs_d, start_m, tl.minimum(start_m + BLOCK_M, T_K),
                                        T_K, qk_scale, seed, drop_threshold, row0,
                                        HEAD_DIM, CAUSAL, True, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
    else:
        full = (T_K // BLOCK_N) * BLOCK_N
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_kd, stride_vt,
                                        stride_vd, offs_m, offs_d, 0, full, T_K, qk_scale, seed, drop_threshold,
                                        row0, HEAD_DIM, CAUSAL, False, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_kd, stride_vt,
                                        stride_vd, offs_m, offs_d, full, T_K, T_K, qk_scale, seed, drop_threshold,
                                        row0, HEAD_DIM, CAUSAL, True, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)

    acc = acc / l_i[:, None]
    if DROPOUT:
        acc = acc * drop_scale
    o_ptrs = O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od
    o_mask = (offs_m[:, None] < T_Q) & (offs_d[None, :] < HEAD_DIM)
    tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=o_mask)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # base 2 -> natural log
    tl.store(LSE + pid_bh.to(tl.int64) * T_Q + offs_m, lse, mask=offs_m < T_Q)


@triton.jit
def _attn_bwd_delta(
    O,  # forward output [B, H, Tq, D]
    DO,  # output gradient [B, H, Tq, D]
    DELTA,  # out: rowsum(dO * O) [B*H, Tq] fp32
    stride_ob, stride_oh, stride_ot, stride_od,  # O strides
    stride_gb, stride_gh, stride_gt, stride_gd,  # dO strides
    H,  # number of heads
    T_Q,  # number of queries
    HEAD_DIM: tl.constexpr,  # true head dim
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,  # next_power_of_2(HEAD_DIM)
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < T_Q) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od,
                mask=mask, other=0.0)
    do = tl.load(DO + off_b * stride_gb + off_h * stride_gh + offs_m[:, None] * stride_gt
                 + offs_d[None, :] * stride_gd, mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + pid_bh.to(tl.int64) * T_Q + offs_m, delta, mask=offs_m < T_Q)


@triton.jit
def _attn_bwd_dkdv_inner(
    dk,  # dK accumulator [BLOCK_N, BLOCK_D] fp32
    dv,  # dV accumulator [BLOCK_N, BLOCK_D] fp32
    k,  # key tile [BLOCK_N, BLOCK_D]
    v,  # value tile [BLOCK_N, BLOCK_D]
    q_base,  # Q at (b, h, 0, 0)
    do_base,  # dO at (b, h, 0, 0)
    lse_base,  # LSE row of (b, h)
    delta_base,  # DELTA row of (b, h)
    stride_qt, stride_qd,  # Q strides over queries, head dim
    stride_gt, stride_gd,  # dO strides over queries, head dim
    offs_n,  # keys of this program [BLOCK_N]
    offs_d,  # head-dim lanes [BLOCK_D]
    lo,  # first query of the range (multiple of BLOCK_M)
    hi,  # end of the query range
    T_Q,  # number of queries
    qk_scale,  # scale * log2(e)
    seed,  # dropout: Philox key
    drop_threshold,  # dropout: ⌊p·2³¹⌋
    drop_scale,  # dropout: 1 / (1 - p)
    row0,  # dropout: row of query 0 of this (b, h) in P's [B·H·Tq, Tk] view
    start_n,  # dropout: first key of this program
    HEAD_DIM: tl.constexpr,  # true head dim
    CAUSAL: tl.constexpr,  # causal mask
    MASK: tl.constexpr,  # ragged or diagonal range: mask it
    PAD_D: tl.constexpr,  # HEAD_DIM < BLOCK_D
    DROPOUT: tl.constexpr,  # dropout on P
    BLOCK_M: tl.constexpr,  # queries per step
    BLOCK_N: tl.constexpr,  # keys of the program
):
    offs_m0 = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        offs_m = start_m + offs_m0
        qT = _load(q_base + offs_m[None, :] * stride_qt + offs_d[:, None] * stride_qd,
                   offs_m[None, :], T_Q, offs_d[:, None], HEAD_DIM, MASK, PAD_D)
        do = _load(do_base + offs_m[:, None] * stride_gt + offs_d[None, :] * stride_gd,
                   offs_m[:, None], T_Q, offs_d[None, :], HEAD_DIM, MASK, PAD_D)
        if MASK:
            lse = tl.load(lse_base + offs_m, mask=offs_m < T_Q, other=0.0)
            delta = tl.load(delta_base + offs_m, mask=offs_m < T_Q, other=0.0)
        else:
            lse = tl.load(lse_base + offs_m)
            delta = tl.load(delta_base + offs_m)
        # p <= 1 for every real entry; the clamp keeps masked / padded ones from overflowing to inf
        pT = tl.exp2(tl.minimum(tl.dot(k, qT) * qk_scale - lse[None, :] * 1.4426950408889634, 0.0))
        if MASK:
            keep = offs_m[None, :] < T_Q
            if CAUSAL:
                keep = keep & (offs_m[None, :] >= offs_n[:, None])
            pT = tl.where(keep, pT, 0.0)
        dpT = tl.dot(v, tl.trans(do))
        if DROPOUT:  # the forward's bits, transposed: counter (key, row0 + query); dV scaled at the store
            keepT = tl.trans(dropout_keep(seed, row0 + start_m, start_n, drop_threshold, BLOCK_M, BLOCK_N))
            dv = tl.dot(tl.where(keepT, pT, 0.0).to(do.dtype), do, dv)
            dpT = tl.where(keepT, dpT * drop_scale, 0.0)
        else:
            dv = tl.dot(pT.to(do.dtype), do, dv)
        dsT = pT * (dpT - delta[None, :])
        dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk)
    return dk, dv


@triton.jit(do_not_specialize=["seed", "drop_threshold"])
def _attn_bwd_dkdv(
    Q, K, V,  # forward inputs [B, H, T, D]
    DO,  # output gradient [B, H, Tq, D]
    DK,  # out: [B, H, Tk, D]
    DV,  # out: [B, H, Tk, D]
    LSE,  # forward log-sum-exp [B*H, Tq] fp32
    DELTA,  # rowsum(dO * O) [B*H, Tq] fp32
    stride_qb, stride_qh, stride_qt, stride_qd,  # Q strides
    stride_kb, stride_kh, stride_kt, stride_kd,  # K strides
    stride_vb, stride_vh, stride_vt, stride_vd,  # V strides
    stride_gb, stride_gh, stride_gt, stride_gd,  # dO strides
    stride_dkb, stride_dkh, stride_dkt, stride_dkd,  # dK strides
    stride_dvb, stride_dvh, stride_dvt, stride_dvd,  # dV strides
    H,  # number of heads
    T_Q,  # number of queries
    T_K,  # number of keys
    qk_scale,  # scale * log2(e)
    sm_scale,  # scale
    seed,  # dropout: Philox key
    drop_threshold,  # dropout: ⌊p·2³¹⌋
    drop_scale,  # dropout: 1 / (1 - p)
    SEQ_BUCKET,  # autotune key only
    HEAD_DIM: tl.constexpr,  # true head dim
    CAUSAL: tl.constexpr,  # causal mask (Tq == Tk)
    PAD_D: tl.constexpr,  # HEAD_DIM < BLOCK_D
    DROPOUT: tl.constexpr,  # dropout on P
    BLOCK_M: tl.constexpr,  # queries per step (divides BLOCK_N)
    BLOCK_N: tl.constexpr,  # keys per program
    BLOCK_D: tl.constexpr,  # next_power_of_2(HEAD_DIM)
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = _load(K + off_b * stride_kb + off_h * stride_kh + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd,
              offs_n[:, None], T_K, offs_d[None, :], HEAD_DIM, True, PAD_D)
    v = _load(V + off_b * stride_vb + off_h * stride_vh + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
              offs_n[:, None], T_K, offs_d[None, :], HEAD_DIM, True, PAD_D)
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    do_base = DO + off_b * stride_gb + off_h * stride_gh
    lse_base = LSE + pid_bh.to(tl.int64) * T_Q
    delta_base = DELTA + pid_bh.to(tl.int64) * T_Q
    row0 = pid_bh * T_Q
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)

    if CAUSAL:
        # queries before start_n never see these keys; [start_n, start_n + BLOCK_N) is the diagonal
        lo_full = start_n + BLOCK_N
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qt, stride_qd,
                                      stride_gt, stride_gd, offs_n, offs_d, start_n, tl.minimum(lo_full, T_Q),
                                      T_Q, qk_scale, seed, drop_threshold, drop_scale, row0, start_n,
                                      HEAD_DIM, CAUSAL, True, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
    else:
        lo_full = 0
    full = (T_Q // BLOCK_M) * BLOCK_M
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qt, stride_qd,
                                  stride_gt, stride_gd, offs_n, offs_d, lo_full, full,
                                  T_Q, qk_scale, seed, drop_threshold, drop_scale, row0, start_n,
                                  HEAD_DIM, CAUSAL, False, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qt, stride_qd,
                                  stride_gt, stride_gd, offs_n, offs_d, tl.maximum(lo_full, full), T_Q,
                                  T_Q, qk_scale, seed, drop_threshold, drop_scale, row0, start_n,
                                  HEAD_DIM, CAUSAL, True, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)

    mask = (offs_n[:, None] < T_K) & (offs_d[None, :] < HEAD_DIM)
    dk_ptrs = DK + off_b * stride_dkb + off_h * stride_dkh + offs_n[:, None] * stride_dkt + offs_d[None, :] * stride_dkd
    dv_ptrs = DV + off_b * stride_dvb + off_h * stride_dvh + offs_n[:, None] * stride_dvt + offs_d[None, :] * stride_dvd
    if DROPOUT:
        dv = dv * drop_scale
    tl.store(dk_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=mask)


@triton.jit
def _attn_bwd_dq_inner(
    dq,  # dQ accumulator [BLOCK_M, BLOCK_D] fp32
    q,  # query tile [BLOCK_M, BLOCK_D]
    do,  # output-gradient tile [BLOCK_M, BLOCK_D]
    lse2,  # row log-sum-exp in base 2 [BLOCK_M]
    delta,  # rowsum(dO * O) [BLOCK_M]
    k_base,  # K at (b, h, 0, 0)
    v_base,  # V at (b, h, 0, 0)
    stride_kt, stride_kd,  # K strides over keys, head dim
    stride_vt, stride_vd,  # V strides over keys, head dim
    offs_m,  # queries of this program [BLOCK_M]
    offs_d,  # head-dim lanes [BLOCK_D]
    lo,  # first key of the range (multiple of BLOCK_N)
    hi,  # end of the key range
    T_K,  # number of keys
    qk_scale,  # scale * log2(e)
    seed,  # dropout: Philox key
    drop_threshold,  # dropout: ⌊p·2³¹⌋
    drop_scale,  # dropout: 1 / (1 - p)
    row0,  # dropout: row of this program's first query in P's [B·H·Tq, Tk] view
    HEAD_DIM: tl.constexpr,  # true head dim
    CAUSAL: tl.constexpr,  # causal mask
    MASK: tl.constexpr,  # ragged or diagonal range: mask it
    PAD_D: tl.constexpr,  # HEAD_DIM < BLOCK_D
    DROPOUT: tl.constexpr,  # dropout on P
    BLOCK_M: tl.constexpr,  # queries of the program
    BLOCK_N: tl.constexpr,  # keys per step
):
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_n0
        kT = _load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None] * stride_kd,
                   offs_n[None, :], T_K, offs_d[:, None], HEAD_DIM, MASK, PAD_D)
        vT = _load(v_base + offs_n[None, :] * stride_vt + offs_d[:, None] * stride_vd,
                   offs_n[None, :], T_K, offs_d[:, None], HEAD_DIM, MASK, PAD_D)
        p = tl.exp2(tl.minimum(tl.dot(q, kT) * qk_scale - lse2[:, None], 0.0))  # <= 1, see dK/dV
        if MASK:
            keep = offs_n[None, :] < T_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            p = tl.where(keep, p, 0.0)
        dp = tl.dot(do, vT)
        if DROPOUT:  # the forward's bits: counter (key, row0 + query)
            keep = dropout_keep(seed, row0, start_n, drop_threshold, BLOCK_M, BLOCK_N)
            dp = tl.where(keep, dp * drop_scale, 0.0)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq)
    return dq


@triton.jit(do_not_specialize=["seed", "drop_threshold"])
def _attn_bwd_dq(
    Q, K, V,  # forward inputs [B, H, T, D]
    DO,  # output gradient [B, H, Tq, D]
    DQ,  # out: [B, H, Tq, D]
    LSE,  # forward log-sum-exp [B*H, Tq] fp32
    DELTA,  # rowsum(dO * O) [B*H, Tq] fp32
    stride_qb, stride_qh, stride_qt, stride_qd,  # Q strides
    stride_kb, stride_kh, stride_kt, stride_kd,  # K strides
    stride_vb, stride_vh, stride_vt, stride_vd,  # V strides
    stride_gb, stride_gh, stride_gt, stride_gd,  # dO strides
    stride_dqb, stride_dqh, stride_dqt, stride_dqd,  # dQ strides
    H,  # number of heads
    T_Q,  # number of queries
    T_K,  # number of keys
    qk_scale,  # scale * log2(e)
    sm_scale,  # scale
    seed,  # dropout: Philox key
    drop_threshold,  # dropout: ⌊p·2³¹⌋
    drop_scale,  # dropout: 1 / (1 - p)
    SEQ_BUCKET,  # autotune key only
    HEAD_DIM: tl.constexpr,  # true head dim
    CAUSAL: tl.constexpr,  # causal mask (Tq == Tk)
    PAD_D: tl.constexpr,  # HEAD_DIM < BLOCK_D
    DROPOUT: tl.constexpr,  # dropout on P
    BLOCK_M: tl.constexpr,  # queries per program
    BLOCK_N: tl.constexpr,  # keys per step (divides BLOCK_M)
    BLOCK_D: tl.constexpr,  # next_power_of_2(HEAD_DIM)
):
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # longest causal rows start first
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = _load(Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd,
              offs_m[:, None], T_Q, offs_d[None, :], HEAD_DIM, True, PAD_D)
    do = _load(DO + off_b * stride_gb + off_h * stride_gh + offs_m[:, None] * stride_gt + offs_d[None, :] * stride_gd,
               offs_m[:, None], T_Q, offs_d[None, :], HEAD_DIM, True, PAD_D)
    lse2 = tl.load(LSE + pid_bh.to(tl.int64) * T_Q + offs_m, mask=offs_m < T_Q, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * T_Q + offs_m, mask=offs_m < T_Q, other=0.0)
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    row0 = pid_bh * T_Q + start_m  # dropout row of the first query
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    if CAUSAL:
        dq = _attn_bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
                                offs_m, offs_d, 0, start_m, T_K, qk_scale, seed, drop_threshold, drop_scale, row0,
                                HEAD_DIM, CAUSAL, False, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
        dq = _attn_bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
                                offs_m, offs_d, start_m, tl.minimum(start_m + BLOCK_M, T_K), T_K, qk_scale,
                                seed, drop_threshold, drop_scale, row0, HEAD_DIM, CAUSAL, True, PAD_D, DROPOUT,
                                BLOCK_M, BLOCK_N)
    else:
        full = (T_K // BLOCK_N) * BLOCK_N
        dq = _attn_bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
                                offs_m, offs_d, 0, full, T_K, qk_scale, seed, drop_threshold, drop_scale, row0,
                                HEAD_DIM, CAUSAL, False, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
        dq = _attn_bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_kd, stride_vt, stride_vd,
                                offs_m, offs_d, full, T_K, T_K, qk_scale, seed, drop_threshold, drop_scale, row0,
                                HEAD_DIM, CAUSAL, True, PAD_D, DROPOUT, BLOCK_M, BLOCK_N)
    dq_ptrs = DQ + off_b * stride_dqb + off_h * stride_dqh + offs_m[:, None] * stride_dqt + offs_d[None, :] * stride_dqd
    tl.store(dq_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty),
             mask=(offs_m[:, None] < T_Q) & (offs_d[None, :] < HEAD_DIM))


# Autotune spaces per padded head dim (16 and 32 use the 64 row): (outer block, inner block, warps,
# stages). Picked from sm_90 compiles (cuobjdump -res-usage) as spill-free, or nearly, and within
# 227 KB of shared memory in bf16; fp32 configs that do not fit are skipped by the autotuner.
_FWD_SPACE = {  # (BLOCK_M queries per program, BLOCK_N keys per step); BLOCK_N divides BLOCK_M
    64: [(64, 32, 4, 3), (64, 64, 4, 3), (128, 32, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 4, 4),
         (128, 128, 8, 2), (128, 128, 8, 3)],
    128: [(64, 32, 4, 3), (64, 64, 4, 3), (64, 64, 8, 3), (128, 32, 8, 3), (128, 64, 8, 2), (128, 64, 8, 3),
          (128, 128, 8, 2)],
    256: [(64, 32, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2), (128, 64, 8, 2)],
}
_DKDV_SPACE = {  # (BLOCK_N keys per program, BLOCK_M queries per step); BLOCK_M divides BLOCK_N
    64: [(64, 16, 4, 3), (64, 32, 4, 3), (64, 32, 8, 3), (64, 64, 8, 2), (128, 16, 8, 3), (128, 32, 8, 2),
         (128, 32, 8, 3), (128, 64, 8, 2)],
    128: [(64, 16, 4, 3), (64, 16, 8, 3), (64, 32, 8, 3), (64, 64, 8, 2), (128, 16, 8, 3), (128, 32, 8, 2),
          (128, 32, 8, 3)],
    256: [(32, 16, 8, 2), (32, 32, 8, 2), (64, 16, 8, 2)],
}
_DQ_SPACE = {  # (BLOCK_M queries per program, BLOCK_N keys per step); BLOCK_N divides BLOCK_M
    64: [(64, 32, 4, 3), (64, 64, 4, 3), (128, 16, 8, 3), (128, 32, 4, 3), (128, 32, 8, 3), (128, 64, 8, 2),
         (128, 64, 8, 3)],
    128: [(64, 16, 4, 3), (64, 32, 4, 3), (64, 64, 8, 2), (128, 16, 8, 3), (128, 32, 8, 2), (128, 32, 8, 3),
          (128, 64, 8, 2)],
    256: [(64, 16, 8, 2), (64, 32, 8, 2), (128, 16, 8, 2), (128, 32, 8, 2)],
}
_TUNE_KEY = ["SEQ_BUCKET", "HEAD_DIM", "CAUSAL"]  # not B or H: a new batch size does not re-tune


def _autotuned(kernel, space, outer: str, inner: str):
    """Wrap `kernel` in an autotuner over `space`, benchmarking only the row of the launch's head dim."""
    rows = sorted({row for rs in space.values() for row in rs})
    configs = [triton.Config({outer: a, inner: b}, num_warps=w, num_stages=s) for a, b, w, s in rows]

    def prune(configs, named_args, **kwargs):
        allowed = set(space[max(64, kwargs["BLOCK_D"])])
        return [c for c in configs if (c.kwargs[outer], c.kwargs[inner], c.num_warps, c.num_stages) in allowed]

    return triton.autotune(configs=configs, key=_TUNE_KEY, prune_configs_by={"early_config_prune": prune})(kernel)


_attn_fwd_tuned = _autotuned(_attn_fwd, _FWD_SPACE, "BLOCK_M", "BLOCK_N")
_attn_bwd_dkdv_tuned = _autotuned(_attn_bwd_dkdv, _DKDV_SPACE, "BLOCK_N", "BLOCK_M")
_attn_bwd_dq_tuned = _autotuned(_attn_bwd_dq, _DQ_SPACE, "BLOCK_M", "BLOCK_N")
_INTERP = {"BLOCK_M": 16, "BLOCK_N": 16}  # single small config under TRITON_INTERPRET=1


# ---------------------------------------------------------------------------------------- launchers
def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    """Shape rules shared by the kernels and the reference (dtype checks live in the public function)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be [B, H, T, D], got shape {tuple(t.shape)}")
        if 0 in t.shape:
            raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    B, H, Tq, D = q.shape
    if not MIN_HEAD_DIM <= D <= MAX_HEAD_DIM:
        raise ValueError(f"q head dim must be in [{MIN_HEAD_DIM}, {MAX_HEAD_DIM}], got shape {tuple(q.shape)}")
    if k.shape[:2] != (B, H) or k.shape[3] != D:
        raise ValueError(f"k must be [B, H, Tk, D] = [{B}, {H}, Tk, {D}] to match q {tuple(q.shape)}, "
                         f"got shape {tuple(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"v must have k's shape {tuple(k.shape)}, got shape {tuple(v.shape)}")
    if causal and Tq != k.shape[2]:
        raise ValueError(f"causal attention needs Tq == Tk, got q shape {tuple(q.shape)} and k shape "
                         f"{tuple(k.shape)}")


def _resolve_scale(scale: float | None, head_dim: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return scale


def _strides(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.stride())


def dense_like(t: torch.Tensor) -> torch.Tensor:
    """An empty dense tensor shaped like ``t`` whose dims lie in memory in ``t``'s order (by stride).

    q, k, v of a model are usually views of one qkv projection, [B, T, H, E] in memory read as
    [B, H, T, E]: the output and the gradients laid out the same way make the model's
    ``transpose(1, 2).reshape(B, T, D)`` around attention a view, not a copy, forward and backward."""
    order = sorted(range(t.dim()), key=lambda i: -t.stride(i))  # outermost first; stable for ties
    buf = t.new_empty([t.shape[i] for i in order])
    return buf.permute([order.index(i) for i in range(t.dim())])


def _device_of(t: torch.Tensor):
    """Triton launches on the current CUDA device: make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _dropout_args(B: int, H: int, Tq: int, Tk: int, dropout_p: float, seed: int):
    """(seed, threshold, scale) kernel arguments and the DROPOUT flag, after checking the ranges."""
    p, seed = check_dropout(dropout_p, seed)
    if p > 0.0:
        check_index_range(B * H * Tq, Tk, f"attention probabilities [{B}, {H}, {Tq}, {Tk}]")
    return (seed, threshold(p), 1.0 / (1.0 - p)), p > 0.0


def _attention_fwd(q, k, v, causal: bool, scale: float, out=None, *, dropout_p: float = 0.0, seed: int = 0):
    """Launch the forward. Returns (out [B, H, Tq, D], lse [B*H, Tq] fp32). `out` may be preallocated.
    With dropout_p > 0, P is dropped by dropout_mask(seed, (B, H, Tq, Tk), dropout_p)."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    drop_args, dropout = _dropout_args(B, H, Tq, Tk, dropout_p, seed)
    if out is None:
        out = dense_like(q)
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
        raise ValueError(f"out must be a {q.dtype} tensor of shape {tuple(q.shape)}, got {tuple(out.shape)}")
    lse = torch.empty((B * H, Tq), device=q.device, dtype=torch.float32)
    block_d = triton.next_power_of_2(D)
    args = (q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            H, Tq, Tk, scale * LOG2E, *drop_args, triton.next_power_of_2(max(Tq, Tk)))
    meta = dict(HEAD_DIM=D, CAUSAL=bool(causal), PAD_D=block_d != D, DROPOUT=dropout, BLOCK_D=block_d)
    if interpreting():
        _attn_fwd[(triton.cdiv(Tq, _INTERP["BLOCK_M"]), B * H)](*args, **meta, **_INTERP)
    else:
        _attn_fwd_tuned[lambda m: (triton.cdiv(Tq, m["BLOCK_M"]), B * H)](*args, **meta)
    return out, lse


def _attention_bwd(do, q, k, v, o, lse, causal: bool, scale: float,
                   need_dq: bool = True, need_dkdv: bool = True, dq=None, dk=None, dv=None, *,
                   dropout_p: float = 0.0, seed: int = 0):
    """Launch the backward: delta, then dK/dV and dQ. Returns (dq, dk, dv); a skipped one is None.

    dq, dk, dv may be preallocated (any strides) — tests pass NaN-filled buffers. (dropout_p, seed)
    must be the forward's: both kernels regenerate its mask."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    drop_args, dropout = _dropout_args(B, H, Tq, Tk, dropout_p, seed)
    block_d = triton.next_power_of_2(D)
    interp = interpreting()
    delta = torch.empty((B * H, Tq), device=q.device, dtype=torch.float32)
    bm = 16 if interp else 64
    _attn_bwd_delta[(triton.cdiv(Tq, bm), B * H)](
        o, do, delta, *_strides(o), *_strides(do), H, Tq, HEAD_DIM=D, BLOCK_M=bm, BLOCK_D=block_d)
    meta = dict(HEAD_DIM=D, CAUSAL=bool(causal), PAD_D=block_d != D, DROPOUT=dropout, BLOCK_D=block_d)
    common = (H, Tq, Tk, scale * LOG2E, scale, *drop_args, triton.next_power_of_2(max(Tq, Tk)))
    if need_dkdv:
        dk = dense_like(k) if dk is None else dk
        dv = dense_like(v) if dv is None else dv
        args = (q, k, v, do, dk, dv, lse, delta, *_strides(q), *_strides(k), *_strides(v), *_strides(do),
                *_strides(dk), *_strides(dv), *common)
        if interp:
            _attn_bwd_dkdv[(triton.cdiv(Tk, _INTERP["BLOCK_N"]), B * H)](*args, **meta, **_INTERP)
        else:
            _attn_bwd_dkdv_tuned[lambda m: (triton.cdiv(Tk, m["BLOCK_N"]), B * H)](*args, **meta)
    if need_dq:
        dq = dense_like(q) if dq is None else dq
        args = (q, k, v, do, dq, lse, delta, *_strides(q), *_strides(k), *_strides(v), *_strides(do),
                *_strides(dq), *common)
        if interp:
            _attn_bwd_dq[(triton.cdiv(Tq, _INTERP["BLOCK_M"]), B * H)](*args, **meta, **_INTERP)
        else:
            _attn_bwd_dq_tuned[lambda m: (triton.cdiv(Tq, m["BLOCK_M"]), B * H)](*args, **meta)
    return (dq if need_dq else None), (dk if need_dkdv else None), (dv if need_dkdv else None)


# ----------------------------------------------------------------------------------------- autograd
class AttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, dropout_p, seed):
        with _device_of(q):
            out, lse = _attention_fwd(q, k, v, causal, scale, dropout_p=dropout_p, seed=seed)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale = causal, scale
        ctx.dropout_p, ctx.seed = dropout_p, seed  # the seed, never the mask
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse = ctx.saved_tensors
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        with _device_of(q):
            dq, dk, dv = _attention_bwd(do, q, k, v, out, lse, ctx.causal, ctx.scale,
                                        need_dq=need_q, need_dkdv=need_k or need_v,
                                        dropout_p=ctx.dropout_p, seed=ctx.seed)
        return dq, (dk if need_k else None), (dv if need_v else None), None, None, None, None


# ---------------------------------------------------------------------------------------- reference
def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        causal: bool = False, scale: float | None = None, *, dropout_p: float = 0.0,
                        seed: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """dropout(softmax(q kᵀ · scale [+ causal mask])) v in plain PyTorch (fp32 math for half inputs).

    With dropout_p > 0 the keep mask of the probabilities [B, H, Tq, Tk] is `mask` (bool) or else
    the kernels' own, dropout_mask(seed, (B, H, Tq, Tk), dropout_p); kept ones scale by 1/(1-p)."""
    _check_shapes(q, k, v, causal)
    scale = _resolve_scale(scale, q.shape[-1])
    drop_p, seed = check_dropout(dropout_p, seed if mask is None else 0)
    ct = torch.promote_types(q.dtype, torch.float32)
    s = torch.matmul(q.to(ct), k.to(ct).transpose(-2, -1)) * scale
    if causal:
        Tq, Tk = q.shape[2], k.shape[2]
        upper = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(1)
        s = s.masked_fill(upper, float("-inf"))
    p = torch.softmax(s, dim=-1)
    if drop_p > 0.0:
        if mask is None:
            mask = dropout_mask(seed, p.shape, drop_p, p.device)
        if tuple(mask.shape) != tuple(p.shape):
            raise ValueError(f"mask must have the probabilities' shape {tuple(p.shape)}, got {tuple(mask.shape)}")
        p = p * mask.to(device=p.device, dtype=ct) / (1.0 - drop_p)
    return torch.matmul(p, v.to(ct)).to(q.dtype)


# ------------------------------------------------------------------------------------------- public
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              causal: bool = False, scale: float | None = None, *, dropout_p: float = 0.0,
              seed: int | None = None) -> torch.Tensor:
    """dropout(softmax(q kᵀ · scale [+ causal mask])) v for q [B, H, Tq, D], k, v [B, H, Tk, D].

    scale defaults to 1/sqrt(D); causal needs Tq == Tk and masks the upper triangle; D in [16, 256].
    dropout_p in [0, 1) drops probabilities by the Philox mask dropout_mask(seed, (B, H, Tq, Tk),
    dropout_p); seed None draws one from torch's generator. Differentiable in q, k and v."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(name, t, ndim=4)
    check_same("q", q, "k", k)
    check_same("q", q, "v", v)
    _check_shapes(q, k, v, causal)
    scale = _resolve_scale(scale, q.shape[-1])
    drop_p, seed = check_dropout(dropout_p, seed)
    # the interpreter has no bf16 (numpy): on the CPU only float32 runs the kernels
    if use_triton(q, k, v) and (q.is_cuda or q.dtype == torch.float32):
        return AttentionFunction.apply(q, k, v, bool(causal), scale, drop_p, seed)
    return attention_reference(q, k, v, causal, scale, dropout_p=drop_p, seed=seed)
