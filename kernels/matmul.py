"""Matrix multiply with a fused bias + activation + dropout + residual epilogue, in Triton.

    y = dropout(act(a @ b + bias)) + residual        a [..., M, K],  b [K, N] or [..., K, N]

Forward: one tiled GEMM. Programs walk the output tiles in groups of GROUP_M tile-rows (grouped
ordering: programs running together share A tile-rows and B tile-columns in L2), accumulate
over K blocks in fp32, and the epilogue adds bias, applies the activation, adds the residual and
stores y: one kernel, one write. When a backward will follow and there is an activation, the
epilogue also stores s = act'(z) (z = a @ b + bias), output-sized, in the input dtype.
Dropout (DROPOUT constexpr, off at p = 0) keeps element (row, col) of y's [rows, N] view by the
Philox draw of `dropout.dropout_keep` and scales it by 1/(1-p); s then carries the same factor
(s = act'(z)·keep/(1-p)), so with an activation the backward below needs no RNG at all. Without
one there is no s: the backward regenerates keep/(1-p)·grad from the seed in one elementwise pass
(`dropout.dropout_forward`, a transient buffer) before the GEMMs. The mask is never stored.

Layout, no copies: a 2-D b (or one whose batch dims are all 1) makes a single GEMM over
M = prod(a.shape[:-1]) rows (a's leading dims flattened). A batched b broadcasts its batch dims
against a's like torch.matmul (numpy rules); the broadcast batch dims are collapsed to at most 3
(dims both operands step through uniformly merge) and sit on grid axis 1, and a broadcast
operand steps with stride 0, so nothing is expanded in memory.

Backward, with dz = grad * s (grad itself without activation), never materialized:
  dA   = dz @ b^T    `_matmul_bwd_kernel`: its A operand is (grad, s), multiplied tile by tile
                     as loaded; b is read through swapped strides.
  dB^T = dz^T @ a    the same kernel on dz^T and a (swapped strides), storing through the
                     transposed strides of dB; its programs on the first column-block also sum
                     their dz^T tiles over the inner dim: the bias gradient (fp32 per batch entry).
  dresidual = grad.  Gradients of broadcast batch dims are summed afterwards (sum_to_size).
Split-K: when a gradient has too few output tiles to fill the GPU (dB of a small weight over
many tokens), grid axis 2 cuts the inner dim into chunks writing fp32 partials, summed after.
Why s = act'(z) and not z: the backward GEMMs then apply the activation gradient with one
multiply per loaded element; re-evaluating erf/exp inside both GEMM main loops (each dz tile is
loaded once per output tile-column) costs CUDA-core time comparable to the tensor-core MMAs,
and recomputing z would be a third GEMM. s takes the same memory as z.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, check_float, check_same, interpreting, use_triton
from .dropout import check_dropout, check_index_range, dropout_forward, dropout_mask, threshold

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .dropout import dropout_keep

ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh")
_MAX_BATCH = 65535  # grid axis 1 limit

# ----------------------------------------------------------------------------------------------
# 1. Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _tanh(x):
        e = tl.exp(-2.0 * tl.abs(x))  # in (0, 1]: no overflow
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0.0, -t, t)

    @triton.jit
    def _act(z, ACTIVATION: tl.constexpr):
        """(act(z), act'(z)) of an fp32 tile; the compiler drops act' where it is not stored."""
        if ACTIVATION == "relu":
            y = tl.maximum(z, 0.0)
            d = tl.where(z > 0.0, 1.0, 0.0)
        elif ACTIVATION == "gelu":  # exact: z * Phi(z)
            cdf = 0.5 * (1.0 + tl.erf(z * 0.7071067811865476))
            y = z * cdf
            d = cdf + z * 0.3989422804014327 * tl.exp(-0.5 * z * z)
        elif ACTIVATION == "gelu_tanh":  # 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
            t = _tanh(0.7978845608028654 * (z + 0.044715 * z * z * z))
            y = 0.5 * z * (1.0 + t)
            d = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * z * z)
        elif ACTIVATION == "silu":
            sg = tl.sigmoid(z)
            y = z * sg
            d = sg * (1.0 + z * (1.0 - sg))
        elif ACTIVATION == "sigmoid":
            y = tl.sigmoid(z)
            d = y * (1.0 - y)
        elif ACTIVATION == "tanh":
            y = _tanh(z)
            d = 1.0 - y * y
        else:
            y = z
            d = z
        return y, d

    @triton.jit
    def _tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
        """Grouped ordering: program_id(0) -> (tile row, tile column), GROUP_M rows at a time."""
        pid = tl.program_id(0)
        width = GROUP_M * tl.cdiv(N, BLOCK_N)
        first_m = (pid // width) * GROUP_M
        group_m = tl.minimum(tl.cdiv(M, BLOCK_M) - first_m, GROUP_M)
        return first_m + (pid % width) % group_m, (pid % width) // group_m

    @triton.jit
    def _batch_offset(B1, B2, stride0, stride1, stride2):
        """Element offset of batch entry program_id(1) = (i0, i1, i2) over sizes (B0, B1, B2)."""
        pid = tl.program_id(1).to(tl.int64)
        return (pid // (B1 * B2)) * stride0 + ((pid // B2) % B1) * stride1 + (pid % B2) * stride2

    @triton.jit
    def _mainloop(
        a_ptrs,  # [BLOCK_M, BLOCK_K] pointers to the first A tile
        s_ptrs,  # [BLOCK_M, BLOCK_K] pointers to the first scale tile (read only with SCALE)
        b_ptrs,  # [BLOCK_K, BLOCK_N] pointers to the first B tile
        K,  # inner size
        step_a, step_s, step_b,  # pointer advance per K block
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile sizes
        SCALE: tl.constexpr,  # A = A * S elementwise as loaded (the activation gradient)
        ROW_SUM: tl.constexpr,  # also return the row sums of A over K
        PRECISION: tl.constexpr,  # tl.dot input precision ("ieee" or "tf32")
    ):
        offs_k = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        rsum = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for kb in range(0, tl.cdiv(K, BLOCK_K)):
            k_left = K - kb * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            if SCALE:
                s = tl.load(s_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
                a = (a.to(tl.float32) * s.to(tl.float32)).to(a.dtype)
                s_ptrs += step_s
            if ROW_SUM:
                rsum += tl.sum(a.to(tl.float32), axis=1)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
            a_ptrs += step_a
            b_ptrs += step_b
        return acc, rsum

    @triton.jit(do_not_specialize=["seed", "drop_threshold"])
    def _matmul_fwd_kernel(
        a_ptr,  # A operand [..., M, K], any strides
        b_ptr,  # B operand [..., K, N], any strides
        bias_ptr,  # bias [N] (a dummy without HAS_BIAS)
        r_ptr,  # residual [Bt, M, N] (a dummy without HAS_RES)
        c_ptr,  # output y [Bt, M, N]
        s_ptr,  # act'(z) [Bt, M, N], same strides as c (written only with SAVE_GRAD)
        M, N, K,  # GEMM sizes of one batch entry
        B1, B2,  # sizes of batch dims 1 and 2 (dim 0: grid axis 1 / (B1 * B2))
        stride_a0, stride_a1, stride_a2, stride_am, stride_ak,  # a: batch dims 0-2, rows, inner
        stride_b0, stride_b1, stride_b2, stride_bk, stride_bn,  # b: batch dims 0-2, inner, cols
        stride_rb, stride_rm, stride_rn,  # residual: flat batch, rows, cols
        stride_cb, stride_cm, stride_cn,  # output and s: flat batch, rows, cols
        seed,  # dropout: Philox key
        drop_threshold,  # dropout: ⌊p·2³¹⌋
        drop_scale,  # dropout: 1 / (1 - p)
        M_KEY, N_KEY, K_KEY,  # power-of-two buckets of M, N, K: the autotuning key only
        ACTIVATION: tl.constexpr,  # one of ACTIVATIONS
        HAS_BIAS: tl.constexpr,  # add bias before the activation
        DROPOUT: tl.constexpr,  # drop after the activation (p > 0)
        HAS_RES: tl.constexpr,  # add the residual after it
        SAVE_GRAD: tl.constexpr,  # store act'(z) for the backward
        PRECISION: tl.constexpr,  # tl.dot input precision
        BLOCK_M: tl.constexpr,  # output rows per tile
        BLOCK_N: tl.constexpr,  # output columns per tile
        BLOCK_K: tl.constexpr,  # inner elements per step
        GROUP_M: tl.constexpr,  # tile rows per group of the program ordering
    ):
        pid_m, pid_n = _tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        # rows / columns past the edge wrap onto real ones: loaded, never stored, no load mask
        a_ptrs = (a_ptr + _batch_offset(B1, B2, stride_a0, stride_a1, stride_a2)
                  + (offs_m % M)[:, None] * stride_am + offs_k[None, :] * stride_ak)
        b_ptrs = (b_ptr + _batch_offset(B1, B2, stride_b0, stride_b1, stride_b2)
                  + offs_k[:, None] * stride_bk + (offs_n % N)[None, :] * stride_bn)
        acc, _ = _mainloop(a_ptrs, a_ptrs, b_ptrs, K, BLOCK_K * stride_ak, 0, BLOCK_K * stride_bk,
                           BLOCK_M, BLOCK_N, BLOCK_K, False, False, PRECISION)

        # epilogue: bias, activation (and its derivative), dropout, residual
        pid_b = tl.program_id(1).to(tl.int64)
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
        y, d = _act(acc, ACTIVATION)
        if DROPOUT:  # row of y's [rows, N] view: batch entry pid_b holds rows [pid_b·M, pid_b·M + M)
            keep = dropout_keep(seed, pid_b * M + pid_m * BLOCK_M, pid_n * BLOCK_N, drop_threshold, BLOCK_M, BLOCK_N)
            y = tl.where(keep, y * drop_scale, 0.0)
            d = tl.where(keep, d * drop_scale, 0.0)  # s carries the mask: no RNG in the backward
        c_off = pid_b * stride_cb + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        if SAVE_GRAD:
            tl.store(s_ptr + c_off, d.to(s_ptr.dtype.element_ty), mask=mask)
        if HAS_RES:
            r_off = pid_b * stride_rb + offs_m[:, None] * stride_rm + offs_n[None, :] * stride_rn
            y += tl.load(r_ptr + r_off, mask=mask, other=0.0).to(tl.float32)
        tl.store(c_ptr + c_off, y.to(c_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _matmul_bwd_kernel(
        g_ptr,  # A operand [Bt, M, K]: the output gradient or its transpose (through strides)
        s_ptr,  # [Bt, M, K] act'(z), multiplied into g as loaded (a dummy without SCALE)
        x_ptr,  # B operand [..., K, N]: b^T or a, through strides
        c_ptr,  # output [SPLIT, Bt, M, N]: dA, or dB^T through transposed strides
        rsum_ptr,  # fp32 [SPLIT, Bt, M]: row sums of g * s over K (the bias gradient), with ROW_SUM
        M, N, K,  # GEMM sizes of one batch entry
        SPLIT,  # split-K: grid axis 2 cuts K into SPLIT chunks, each writing its own partial c
        B1, B2,  # sizes of batch dims 1 and 2 of x (dim 0: grid axis 1 / (B1 * B2))
        stride_gb, stride_gm, stride_gk,  # g: flat batch, rows, inner
        stride_sb, stride_sm, stride_sk,  # s: flat batch, rows, inner
        stride_x0, stride_x1, stride_x2, stride_xk, stride_xn,  # x: batch dims 0-2, inner, cols
        stride_cs, stride_cb, stride_cm, stride_cn,  # output: split, flat batch, rows, cols
        M_KEY, N_KEY, K_KEY,  # power-of-two buckets of M, N, K: the autotuning key only
        SCALE: tl.constexpr,  # there is an activation: the A operand is g * s
        ROW_SUM: tl.constexpr,  # programs of column-block 0 write rsum
        PRECISION: tl.constexpr,  # tl.dot input precision
        BLOCK_M: tl.constexpr,  # output rows per tile
        BLOCK_N: tl.constexpr,  # output columns per tile
        BLOCK_K: tl.constexpr,  # inner elements per step
        GROUP_M: tl.constexpr,  # tile rows per group of the program ordering
    ):
        pid_m, pid_n = _tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        pid_b = tl.program_id(1).to(tl.int64)
        pid_s = tl.program_id(2)
        chunk = tl.cdiv(tl.cdiv(K, SPLIT), BLOCK_K) * BLOCK_K  # this split's K range
        k0 = pid_s * chunk
        k_len = tl.minimum(K - k0, chunk)  # <= 0 for an empty trailing chunk: writes zeros
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = k0 + tl.arange(0, BLOCK_K)
        rows = (offs_m % M)[:, None]
        g_ptrs = g_ptr + pid_b * stride_gb + rows * stride_gm + offs_k[None, :] * stride_gk
        s_ptrs = s_ptr + pid_b * stride_sb + rows * stride_sm + offs_k[None, :] * stride_sk
        x_ptrs = (x_ptr + _batch_offset(B1, B2, stride_x0, stride_x1, stride_x2)
                  + offs_k[:, None] * stride_xk + (offs_n % N)[None, :] * stride_xn)
        steps = (BLOCK_K * stride_gk, BLOCK_K * stride_sk, BLOCK_K * stride_xk)
        if ROW_SUM:
            if pid_n == 0:  # one program per tile row sums it; the others keep the plain loop
                acc, rsum = _mainloop(g_ptrs, s_ptrs, x_ptrs, k_len, steps[0], steps[1], steps[2],
                                      BLOCK_M, BLOCK_N, BLOCK_K, SCALE, True, PRECISION)
                r_off = (pid_s * tl.num_programs(1) + pid_b) * M
                tl.store(rsum_ptr + r_off + offs_m, rsum, mask=offs_m < M)
            else:
                acc, rsum = _mainloop(g_ptrs, s_ptrs, x_ptrs, k_len, steps[0], steps[1], steps[2],
                                      BLOCK_M, BLOCK_N, BLOCK_K, SCALE, False, PRECISION)
        else:
            acc, rsum = _mainloop(g_ptrs, s_ptrs, x_ptrs, k_len, steps[0], steps[1], steps[2],
                                  BLOCK_M, BLOCK_N, BLOCK_K, SCALE, False, PRECISION)
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        c_off = (pid_s * stride_cs + pid_b * stride_cb
                 + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn)
        tl.store(c_ptr + c_off, acc.to(c_ptr.dtype.element_ty), mask=mask)

    def _config(bm, bn, bk, stages, warps):
        meta = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8)
        return triton.Config(meta, num_stages=stages, num_warps=warps)

    # H100-sized tiles (Triton's matmul tutorial set plus 128x128x64); configs that do not fit
    # shared memory (fp32 with the big tiles) fail to compile and the autotuner skips them.
    _CONFIGS = [
        _config(128, 256, 64, 3, 8),
        _config(256, 128, 64, 3, 8),
        _config(128, 128, 64, 3, 8),
        _config(128, 128, 64, 4, 4),
        _config(64, 256, 32, 4, 4),
        _config(128, 64, 32, 4, 4),
        _config(64, 128, 32, 4, 4),
        _config(128, 32, 32, 4, 4),
        _config(64, 32, 32, 5, 2),
        _config(32, 64, 32, 5, 2),
    ]
    _KEY = ["M_KEY", "N_KEY", "K_KEY"]  # buckets, so a new batch size does not re-tune
    _matmul_fwd_tuned = triton.autotune(_CONFIGS, key=_KEY)(_matmul_fwd_kernel)
    _matmul_bwd_tuned = triton.autotune(_CONFIGS, key=_KEY + ["SPLIT"])(_matmul_bwd_kernel)

# under the interpreter: one small config, not an autotuning sweep
_INTERPRET_META = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=2)


# ----------------------------------------------------------------------------------------------
# 2. Launchers
# ----------------------------------------------------------------------------------------------
def _check_args(a, b, bias, activation, residual) -> str:
    """Validate the arguments (ValueError naming the culprit); returns the activation name."""
    check_float("a", a)
    check_float("b", b)
    check_same("a", a, "b", b)
    if a.dim() < 2 or b.dim() < 2:
        raise ValueError(f"a [..., M, K] and b [..., K, N] need 2+ dims, "
                         f"got a {tuple(a.shape)}, b {tuple(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner sizes differ: a {tuple(a.shape)} has K={a.shape[-1]}, "
                         f"b {tuple(b.shape)} has K={b.shape[-2]}")
    try:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"batch dims of a {tuple(a.shape)} and b {tuple(b.shape)} "
                         "do not broadcast") from None
    out_shape = (*batch, a.shape[-2], b.shape[-1])
    if bias is not None:
        check_float("bias", bias)
        check_same("a", a, "bias", bias)
        if tuple(bias.shape) != (b.shape[-1],):
            raise ValueError(f"bias must have shape ({b.shape[-1]},), got {tuple(bias.shape)}")
    if residual is not None:
        check_float("residual", residual)
        check_same("a", a, "residual", residual)
        if tuple(residual.shape) != out_shape:
            raise ValueError(f"residual must have the output shape {out_shape}, "
                             f"got {tuple(residual.shape)}")
    act = "none" if activation is None else activation
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected None or one of {ACTIVATIONS}")
    return act


class _Plan(NamedTuple):
    """How a and b map onto the kernels' batched GEMM: sizes, operand views, batch strides."""
    a: torch.Tensor  # [rows, K] (one GEMM) or a expanded to the batch shape
    b: torch.Tensor  # [K, N] or b expanded to the batch shape
    sizes: tuple  # (B0, B1, B2) batch sizes on grid axis 1
    a_bs: tuple  # batch strides of a for (B0, B1, B2)
    b_bs: tuple  # batch strides of b
    batch: tuple  # broadcast batch shape of the output
    M: int
    N: int
    K: int


def _collapse(batch, a_st, b_st) -> list:
    """[(size, (stride in a, stride in b))] for batch dims, size-1 dims dropped and dims merged
    into their outer neighbour when both operands step through the pair uniformly."""
    dims = []
    for n, sa, sb in zip(batch, a_st, b_st):
        if n == 1:
            continue
        if dims and dims[-1][1] == (sa * n, sb * n):
            dims[-1] = (dims[-1][0] * n, (sa, sb))
        else:
            dims.append((n, (sa, sb)))
    return dims


def _plan(a: torch.Tensor, b: torch.Tensor) -> _Plan:
    K, N = b.shape[-2], b.shape[-1]
    batch = tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    if all(n == 1 for n in b.shape[:-2]):  # one weight for every row: one GEMM, rows flattened
        a2 = a.reshape(-1, K)  # a view unless a's leading dims cannot merge
        return _Plan(a2, b.reshape(K, N), (1, 1, 1), (0, 0, 0), (0, 0, 0), batch, a2.shape[0], N, K)
    ae = a.expand(*batch, *a.shape[-2:])  # stride 0 on broadcast dims
    be = b.expand(*batch, K, N)
    dims = _collapse(batch, ae.stride()[:-2], be.stride()[:-2])
    if len(dims) > 3:  # rare: more than 3 independent batch dims; copy so they merge into one
        ae, be = ae.contiguous(), be.contiguous()
        dims = _collapse(batch, ae.stride()[:-2], be.stride()[:-2])
    dims = [(1, (0, 0))] * (3 - len(dims)) + dims
    sizes = tuple(d[0] for d in dims)
    if math.prod(sizes) > _MAX_BATCH:
        raise ValueError(f"batch of {math.prod(sizes)} matrices exceeds {_MAX_BATCH} "
                         f"(a {tuple(a.shape)}, b {tuple(b.shape)})")
    return _Plan(ae, be, sizes, tuple(d[1][0] for d in dims), tuple(d[1][1] for d in dims),
                 batch, a.shape[-2], N, K)


def _precision(dtype: torch.dtype) -> str:
    """fp32 dots use TF32 exactly when PyTorch's matmuls would."""
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not interpreting()
    return "tf32" if tf32 else "ieee"


def _launch(kernel, tuned, M, N, K, grid_yz, args, consts):
    """Grid (tiles of M x N, *grid_yz); autotuned on a GPU, one small config when interpreted."""
    keys = [triton.next_power_of_2(max(int(n), 1)) for n in (M, N, K)]

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]), *grid_yz)

    if interpreting():
        kernel[grid(_INTERPRET_META)](*args, *keys, **consts, **_INTERPRET_META)
    else:
        tuned[grid](*args, *keys, **consts)


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _split_k(bt: int, M: int, N: int, K: int, device: torch.device) -> int:
    """How many K chunks: >1 only when the M x N output has under half a wave of (nominal) tiles,
    e.g. the dB GEMM of a small weight over many tokens; each chunk at least `depth` deep.
    Interpreted, the numbers are tiny so the tests take this path."""
    tile, sms, depth = (16, 4, 16) if interpreting() else (128, _num_sms(device), 1024)
    tiles = bt * triton.cdiv(M, tile) * triton.cdiv(N, tile)
    if 2 * tiles > sms:
        return 1
    return max(1, min(sms // tiles, K // depth, 16))


def _out_buffer(out, shape, like, name):
    if out is None:
        return torch.empty(shape, device=like.device, dtype=like.dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != like.dtype or not out.is_contiguous():
        raise ValueError(f"{name} must be a contiguous {like.dtype} tensor of shape {tuple(shape)}, "
                         f"got {out.dtype} {tuple(out.shape)}")
    return out


def matmul_forward(a, b, bias=None, activation=None, residual=None, *, dropout_p=0.0, seed=0,
                   save_grad=False, out=None, grad_out=None):
    """Launch the forward kernel. Returns (y, s): s = act'(a @ b + bias) (times keep / (1 - p)
    with dropout) when save_grad and there is an activation, else None. The dropout mask is
    dropout_mask(seed, y.shape, dropout_p). `out` / `grad_out` may be given (contiguous, y's shape)."""
    act = _check_args(a, b, bias, activation, residual)
    drop_p, seed = check_dropout(dropout_p, seed)
    p = _plan(a, b)
    bt = math.prod(p.sizes)
    y = _out_buffer(out, (*p.batch, a.shape[-2], p.N), a, "out")
    save = save_grad and act != "none"
    s = _out_buffer(grad_out, y.shape, a, "grad_out") if save else None
    if y.numel() == 0:
        return y, s
    y3 = y.view(bt, p.M, p.N)
    if drop_p > 0.0:
        check_index_range(bt * p.M, p.N, f"the output {tuple(y.shape)}")
    r3 = residual.reshape(bt, p.M, p.N) if residual is not None else y3
    args = (p.a, p.b, bias if bias is not None else y3, r3, y3, s if save else y3,
            p.M, p.N, p.K, p.sizes[1], p.sizes[2],
            *p.a_bs, p.a.stride(-2), p.a.stride(-1), *p.b_bs, p.b.stride(-2), p.b.stride(-1),
            *r3.stride(), *y3.stride(), seed, threshold(drop_p), 1.0 / (1.0 - drop_p))
    consts = dict(ACTIVATION=act, HAS_BIAS=bias is not None, DROPOUT=drop_p > 0.0,
                  HAS_RES=residual is not None, SAVE_GRAD=save, PRECISION=_precision(a.dtype))
    _launch(_matmul_fwd_kernel, _matmul_fwd_tuned, p.M, p.N, p.K, (bt,), args, consts)
    return y, s


def _grad_gemm(g, s, x, x_bs, x_strides, c, sizes, row_sum, consts):
    """c[bt, M, N] = (g * s)[bt, M, K] @ x[..., K, N], c any strides (dB^T is a transposed view),
    x batched by x_bs and read through x_strides = (inner, column). Returns the fp32 row sums of
    g * s over K and batch ([M], the bias gradient) when row_sum. Split-K goes through fp32
    partials summed here."""
    bt, M, K = g.shape
    N = c.shape[2]
    split = _split_k(bt, M, N, K, c.device)
    part = c if split == 1 else torch.empty(split, bt, M, N, device=c.device, dtype=torch.float32)
    cs = (0, *c.stride()) if split == 1 else part.stride()
    rsum = torch.empty(split, bt, M, device=c.device, dtype=torch.float32) if row_sum else part
    args = (g, s, x, part, rsum, M, N, K, split, sizes[1], sizes[2], *g.stride(), *s.stride(),
            *x_bs, *x_strides, *cs)
    consts = dict(consts, ROW_SUM=row_sum)
    _launch(_matmul_bwd_kernel, _matmul_bwd_tuned, M, N, K, (bt, split), args, consts)
    if split > 1:
        c.copy_(part.sum(0))
    return rsum.sum((0, 1)) if row_sum else None


def grad_like(x: torch.Tensor) -> torch.Tensor:
    """An empty gradient for x in x's own layout when x is the transposed view of a contiguous
    matrix (``w.t()`` of a linear layer): its transpose, the weight's gradient, is then contiguous
    and autograd accumulates it without a copy. Contiguous otherwise."""
    if x.dim() == 2 and x.shape[0] > 1 and x.shape[1] > 1 and x.stride() == (1, x.shape[0]):
        return x.new_empty((x.shape[1], x.shape[0])).t()
    return x.new_empty(x.shape)


def _grad_buffer(out, shape, x, name):
    """Where x's gradient is written, `shape` = x's shape with the batch broadcast: fp32 when
    broadcast dims get summed to x's shape afterwards, else x's dtype (or `out`), in x's layout
    when x is a transposed weight (``grad_like``)."""
    if math.prod(shape) != x.numel():
        return torch.empty(shape, device=x.device, dtype=torch.float32)
    if out is None and tuple(shape) == tuple(x.shape):
        return grad_like(x)
    return _out_buffer(out, x.shape, x, name).view(shape)


def _grad_finish(full, x):
    return full.sum_to_size(x.shape).to(x.dtype) if full.numel() != x.numel() else full.view(x.shape)


def matmul_backward(grad, a, b, s=None, *, dropout_p=0.0, seed=0, need_a=True, need_b=True,
                    need_bias=False, out_a=None, out_b=None):
    """Launch the backward GEMMs of y = dropout(act(a @ b + bias)) + residual, given grad = dL/dy
    and s from matmul_forward (None without activation). With an s the dropout mask is already in
    it; without one, (dropout_p, seed) as in the forward regenerate it. Returns (da, db, dbias),
    None where not asked for. `out_a` / `out_b` may be given (contiguous, a's / b's shape) when
    a / b are not broadcast over batch dims."""
    drop_p, seed = check_dropout(dropout_p, seed)
    if drop_p > 0.0 and s is None:  # dz = grad * keep / (1 - p), transient
        grad = dropout_forward(grad, drop_p, seed)
    p = _plan(a, b)
    bt, M, N, K = math.prod(p.sizes), p.M, p.N, p.K
    g3 = grad.reshape(bt, M, N)
    s3 = s.view(bt, M, N) if s is not None else g3
    consts = dict(SCALE=s is not None, PRECISION=_precision(a.dtype))
    da = db = dbias = None
    if need_a:  # dA [M, K] = dz [M, N] @ b^T [N, K]
        full = _grad_buffer(out_a, (*p.batch, a.shape[-2], K), a, "out_a")
        if full.numel():
            b_t = (p.b.stride(-1), p.b.stride(-2))
            _grad_gemm(g3, s3, p.b, p.b_bs, b_t, full.view(bt, M, K), p.sizes, False, consts)
        da = _grad_finish(full, a)
    if need_b:  # dB^T [N, K] = dz^T [N, M] @ a [M, K], stored through dB's transposed strides
        full = _grad_buffer(out_b, (K, N) if p.b.dim() == 2 else (*p.batch, K, N), b, "out_b")
        if full.numel():
            a_k = (p.a.stride(-2), p.a.stride(-1))
            dbias = _grad_gemm(g3.transpose(1, 2), s3.transpose(1, 2), p.a, p.a_bs, a_k,
                               full.view(bt, K, N).transpose(1, 2), p.sizes, need_bias, consts)
        db = _grad_finish(full, b)
    if need_bias and dbias is None:  # no dB GEMM to fuse into: one reduction
        dbias = (g3.float() * s3.float() if s is not None else g3.float()).sum((0, 1))
    return da, db, dbias.to(a.dtype) if dbias is not None else None


# ----------------------------------------------------------------------------------------------
# 3. Autograd
# ----------------------------------------------------------------------------------------------
class _MatmulFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, bias, activation, residual, dropout_p, seed):
        # s = act'(z) only when a, b or bias needs a gradient (and there is an activation)
        y, s = matmul_forward(a, b, bias, activation, residual, dropout_p=dropout_p, seed=seed,
                              save_grad=any(ctx.needs_input_grad[:3]))
        ctx.save_for_backward(a, b, s)  # a, b are the inputs (no copy); s is the one extra tensor
        ctx.dropout_p, ctx.seed = dropout_p, seed  # the seed, never the mask
        return y

    @staticmethod
    def backward(ctx, grad):
        a, b, s = ctx.saved_tensors
        need_a, need_b, need_bias, _, need_res = ctx.needs_input_grad[:5]
        da, db, dbias = matmul_backward(grad, a, b, s, dropout_p=ctx.dropout_p, seed=ctx.seed,
                                        need_a=need_a, need_b=need_b, need_bias=need_bias)
        return da, db, dbias, None, grad if need_res else None, None, None


# ----------------------------------------------------------------------------------------------
# 4. Reference
# ----------------------------------------------------------------------------------------------
_TORCH_ACTS = {
    "none": lambda z: z,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def matmul_reference(a, b, bias=None, activation=None, residual=None, *, dropout_p=0.0, seed=None,
                     mask=None):
    """dropout(act(a @ b + bias)) + residual in plain PyTorch (any float dtype, float64 in tests).
    With dropout_p > 0 the keep mask is `mask` (bool, the output's shape) or else the kernel's own,
    dropout_mask(seed, output shape, dropout_p); kept elements are scaled by 1 / (1 - p)."""
    act = "none" if activation is None else activation
    if act not in _TORCH_ACTS:
        raise ValueError(f"unknown activation {activation!r}; expected None or one of {ACTIVATIONS}")
    drop_p, seed = check_dropout(dropout_p, seed if mask is None else 0)
    z = torch.matmul(a, b)
    if bias is not None:
        z = z + bias
    y = _TORCH_ACTS[act](z)
    if drop_p > 0.0:
        if mask is None:
            mask = dropout_mask(seed, y.shape, drop_p, y.device)
        if tuple(mask.shape) != tuple(y.shape):
            raise ValueError(f"mask must have the output shape {tuple(y.shape)}, got {tuple(mask.shape)}")
        y = y * mask.to(device=y.device, dtype=y.dtype) / (1.0 - drop_p)
    return y + residual if residual is not None else y


# ----------------------------------------------------------------------------------------------
# 5. Public function
# ----------------------------------------------------------------------------------------------
def matmul(a, b, bias=None, activation=None, residual=None, *, dropout_p=0.0, seed=None):
    """dropout(act(a @ b + bias)) + residual. a [..., M, K]; b [K, N] or [..., K, N] (batch dims
    broadcast like torch.matmul); bias [N]; residual of the output's shape; activation None or one
    of ACTIVATIONS ("gelu" is the exact erf form); dropout_p in [0, 1), its mask drawn by Philox
    from `seed` (None: drawn from torch's generator), the mask of dropout_mask(seed, output shape,
    dropout_p). Differentiable in a, b, bias and residual."""
    act = _check_args(a, b, bias, activation, residual)
    drop_p, seed = check_dropout(dropout_p, seed)
    if not use_triton(a, b, bias, residual):
        return matmul_reference(a, b, bias, act, residual, dropout_p=drop_p, seed=seed)
    tensors = (a, b, bias, residual)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _MatmulFunction.apply(a, b, bias, act, residual, drop_p, seed)
    return matmul_forward(a, b, bias, act, residual, dropout_p=drop_p, seed=seed)[0]
