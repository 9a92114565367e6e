"""Fused linear + cross-entropy: loss = CE(x @ W^T + b, target), without the [N, V] logits.

For a language model's head, x [N, D] (N = B*T tokens), W [V, D], the logits are N*V values
(8192 x 50257 bf16 = 823 MB) and eager PyTorch keeps them, their fp32 softmax and dlogits alive.
Here (the technique of Liger-Kernel's fused linear cross-entropy) the rows are taken in chunks
and every gradient is computed during the forward, so only one chunk of logits ever exists:

  for each chunk of `rows` rows:
    L    = x_c @ W^T + b            matmul_forward into one reused [rows, V] buffer (input dtype)
    loss_c, L = softmax(L) - onehot
                                    `_ce_inplace_kernel`, one program per row: an online max /
                                    sum-exp pass (fp32, as in cross_entropy.py), then a pass
                                    writing dlogits over L in place (each element read before
                                    written; 0 on ignored rows)
    dx_c = L @ W                    matmul_forward into dx's rows
    dW  += L^T @ x_c                `_gemm_acc_kernel`: fp32 dW tile += product, in one kernel
    db  += column sums of L         torch.sum with an fp32 accumulator
  then, for "mean", dx, dW, db *= 1 / (non-ignored rows): applied to the results, not to the
  dlogits, whose fp16 entries would underflow (10x the error at N = 512, V = 50257)

Default `rows` (Liger's rule, with a floor): the next power of two >= max(N / ceil(V / D), D),
so a chunk's logits take about as much memory as x, or as W when that is larger (see
default_chunk_rows). Rows whose target is ignore_index contribute nothing; "mean"
divides by the number of the others (NaN when there are none, as in PyTorch). The loss is
fp32 (fp64 in the float64 reference). Backward only multiplies the saved dx, dW, db by the
incoming scalar gradient. Peak extra memory: one [rows, V] chunk, dx, an fp32 dW (and db);
the chunk is freed before dW is cast to W's dtype.
Targets outside [0, V) (other than ignore_index) raise ValueError on the CPU; on a GPU they are
not checked (no host sync) and give a NaN loss. The interpreter's tl.dot has no bf16: CPU bf16
inputs take the reference path (CUDA bf16 runs the kernels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, check_float, check_same, interpreting, use_triton
from .cross_entropy import check_target
from .matmul import _precision, matmul_forward

if HAS_TRITON:
    import triton
    import triton.language as tl

_REDUCTIONS = ("mean", "sum")
_MAX_CHUNK_ELEMS = 2**31 - 1  # a chunk of logits is indexed with int32 offsets

# ----------------------------------------------------------------------------------------------
# 1. Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _gemm_acc_kernel(
        a_ptr,  # A [M, K], any strides (dlogits^T of one chunk)
        b_ptr,  # B [K, N], any strides (the chunk's rows of x)
        c_ptr,  # C [M, N] fp32, read and written: C += A @ B (the dW accumulator)
        M, N, K,  # GEMM sizes
        stride_am, stride_ak,  # strides of A
        stride_bk, stride_bn,  # strides of B
        stride_cm, stride_cn,  # strides of C
        M_KEY, N_KEY, K_KEY,  # power-of-two buckets of M, N, K: the autotuning key only
        PRECISION: tl.constexpr,  # tl.dot input precision ("ieee" or "tf32")
        BLOCK_M: tl.constexpr,  # output rows per tile
        BLOCK_N: tl.constexpr,  # output columns per tile
        BLOCK_K: tl.constexpr,  # inner elements per step
    ):
        # axis 0 walks the (few) column tiles, so programs running together share an A tile-row
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        # rows / columns past the edge wrap onto real ones: loaded, never stored
        a_ptrs = a_ptr + (offs_m % M).to(tl.int64)[:, None] * stride_am + offs_k[None, :] * stride_ak
        b_ptrs = b_ptr + offs_k[:, None] * stride_bk + (offs_n % N)[None, :] * stride_bn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kb in range(0, tl.cdiv(K, BLOCK_K)):
            k_left = K - kb * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
            a_ptrs += BLOCK_K * stride_ak
            b_ptrs += BLOCK_K * stride_bk
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        c_ptrs = c_ptr + offs_m.to(tl.int64)[:, None] * stride_cm + offs_n[None, :] * stride_cn
        acc += tl.load(c_ptrs, mask=mask, other=0.0)
        tl.store(c_ptrs, acc, mask=mask)

    @triton.jit
    def _ce_inplace_kernel(
        logits_ptr,  # [rows, C] one chunk of logits, contiguous; overwritten by dlogits (WRITE_GRAD)
        target_ptr,  # [rows] int64 class indices
        loss_ptr,  # [rows] fp32 per-row loss out (0 on ignored rows)
        C,  # number of classes
        stride_lm,  # row stride of logits
        stride_tn,  # stride of target
        ignore_index,  # target value whose row is skipped (loss 0, dlogits 0)
        WRITE_GRAD: tl.constexpr,  # also write dlogits = softmax - onehot over the logits
        BLOCK: tl.constexpr,  # classes per step
    ):
        row = tl.program_id(0).to(tl.int64)
        l_row = logits_ptr + row * stride_lm
        t = tl.load(target_ptr + row * stride_tn)
        valid = t != ignore_index
        cols = tl.arange(0, BLOCK)
        c_read = tl.where(valid, C, 0)  # ignored rows are not read
        m = float("-inf")  # running max
        s = 0.0  # running sum of exp(x - m)
        for start in range(0, c_read, BLOCK):  # pass 1: online max / sum-exp
            c = start + cols
            x = tl.load(l_row + c, mask=c < C, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m = m_new
        log_s = tl.log(tl.where(valid, s, 1.0))
        in_range = (t >= 0) & (t < C)  # else NaN: targets are checked on the CPU only
        x_t = tl.load(l_row + t, mask=valid & in_range, other=0.0).to(tl.float32)
        loss = tl.where(in_range, (m - x_t) + log_s, float("nan"))  # not lse - x_t: no rounding of lse
        tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
        if WRITE_GRAD:  # pass 2: dlogits over the logits, each element read before it is written
            lse = tl.where(valid, m + log_s, 0.0)
            for start in range(0, C, BLOCK):
                c = start + cols
                x = tl.load(l_row + c, mask=c < c_read, other=float("-inf")).to(tl.float32)
                d = tl.where(valid, tl.exp(x - lse) - tl.where(c == t, 1.0, 0.0), 0.0)
                tl.store(l_row + c, d.to(logits_ptr.dtype.element_ty), mask=c < C)

    def _prune_blocks(configs, nargs, **kwargs):
        """Small vocabularies: keep only blocks no wider than the next power of two >= C."""
        cap = max(1024, triton.next_power_of_2(nargs["C"]))
        return [c for c in configs if c.kwargs["BLOCK"] <= cap]

    # Blocks of classes, warps, stages; keyed on C only. restore_value: tuning runs the kernel
    # several times, and each run overwrites its input.
    _ce_inplace_tuned = triton.autotune(
        [triton.Config({"BLOCK": b}, num_warps=w, num_stages=st)
         for b, w, st in [(1024, 4, 2), (2048, 8, 2), (4096, 8, 3), (4096, 16, 2), (8192, 16, 2)]],
        key=["C"], restore_value=["logits_ptr"], prune_configs_by={"early_config_prune": _prune_blocks},
    )(_ce_inplace_kernel)

    def _config(bm, bn, bk, stages, warps):
        return triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk), num_stages=stages, num_warps=warps)

    # dW = dlogits^T @ x: M = V (tens of thousands), N = D (hundreds to thousands), K = rows.
    # restore_value: tuning runs the kernel several times, and each run adds into C.
    _gemm_acc_tuned = triton.autotune(
        [_config(128, 256, 64, 3, 8), _config(128, 128, 64, 3, 8), _config(128, 128, 64, 4, 4),
         _config(64, 128, 64, 4, 4), _config(128, 64, 32, 4, 4), _config(64, 64, 32, 5, 2)],
        key=["M_KEY", "N_KEY", "K_KEY"], restore_value=["c_ptr"])(_gemm_acc_kernel)

# under the interpreter: one small config each (C > 32 takes several steps of the online sum)
_INTERPRET_META = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)
_INTERPRET_BLOCK = 32


# ----------------------------------------------------------------------------------------------
# 2. Launchers
# ----------------------------------------------------------------------------------------------
def _check_args(x, weight, target, bias, ignore_index, reduction, chunk_rows):
    """ValueError naming the argument the launcher cannot take."""
    check_float("x", x)
    check_float("weight", weight, ndim=2)
    check_same("x", x, "weight", weight)
    if x.dim() == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x must be [..., D] with D = weight.shape[1] = {weight.shape[1]} "
                         f"(weight [V, D] = {tuple(weight.shape)}), got x {tuple(x.shape)}")
    if weight.shape[0] == 0:
        raise ValueError(f"weight must have at least one class row, got shape {tuple(weight.shape)}")
    if bias is not None:
        check_float("bias", bias)
        check_same("x", x, "bias", bias)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool)
                                   or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be None or a positive int, got {chunk_rows!r}")
    check_target(target, x, "x", weight.shape[0], ignore_index)


def default_chunk_rows(n: int, d: int, v: int) -> int:
    """Rows per chunk: Liger's rule, the next power of two >= n / ceil(v / d), so that a chunk of
    logits [rows, v] is about the size of x [n, d] -- but never fewer than d rows, so a chunk may
    grow to the size of W: the fp32 dW accumulator (2 W) is alive anyway, and at GPT-2's head
    (n 8192, d 768, v 50257) Liger's 128 rows make 64 chunks of ~5 launches whose Python launch
    cost would exceed their GPU time (1024 rows: 8 chunks). At most n rows (at least 1), and
    rows * v < 2**31 (the kernels' int32 offsets)."""
    per_row = -(-v // d)  # ceil(v / d): logits per row over x per row
    rows = 1 << max(0, (max(-(-n // per_row), d) - 1).bit_length())
    return max(1, min(rows, n, _MAX_CHUNK_ELEMS // v))


def _ce_inplace(logits, target, loss, ignore_index, write_grad):
    """Per-row loss into `loss`; with write_grad, dlogits = softmax - onehot over `logits`."""
    rows, c = logits.shape
    args = (logits, target, loss, c, logits.stride(0), target.stride(0), ignore_index)
    if interpreting():
        _ce_inplace_kernel[(rows,)](*args, WRITE_GRAD=write_grad, BLOCK=_INTERPRET_BLOCK)
    else:
        _ce_inplace_tuned[(rows,)](*args, WRITE_GRAD=write_grad)


def _gemm_acc(a, b, c):
    """c += a @ b in one kernel: a [M, K], b [K, N] (same dtype, any strides), c [M, N] fp32."""
    M, K = a.shape
    N = b.shape[1]
    keys = [triton.next_power_of_2(max(int(s), 1)) for s in (M, N, K)]
    args = (a, b, c, M, N, K, *a.stride(), *b.stride(), *c.stride(), *keys)
    if interpreting():
        meta = _INTERPRET_META
        grid = (triton.cdiv(N, meta["BLOCK_N"]), triton.cdiv(M, meta["BLOCK_M"]))
        _gemm_acc_kernel[grid](*args, PRECISION=_precision(a.dtype), **meta)
    else:
        def grid(meta):
            return (triton.cdiv(N, meta["BLOCK_N"]), triton.cdiv(M, meta["BLOCK_M"]))
        _gemm_acc_tuned[grid](*args, PRECISION=_precision(a.dtype))


def _run_chunks(x2, t1, weight, bias, rows, ignore_index, loss_rows, dx, dw, db):
    """The chunk loop: per-row losses into loss_rows; dlogits-based sums into dx (rows written),
    dw and db (fp32, added to) where they are not None. The chunk buffer is freed on return."""
    grads = dx is not None or dw is not None or db is not None
    logits = torch.empty(rows, weight.shape[0], device=x2.device, dtype=x2.dtype)  # reused
    w_t = weight.t()  # [D, V] view: the logits GEMM reads W through swapped strides
    for s in range(0, x2.shape[0], rows):
        e = min(s + rows, x2.shape[0])
        xc, tc, lc = x2[s:e], t1[s:e], logits[:e - s]
        matmul_forward(xc, w_t, bias, out=lc)  # logits of the chunk
        _ce_inplace(lc, tc, loss_rows[s:e], ignore_index, grads)  # loss, dlogits in place
        if dx is not None:
            matmul_forward(lc, weight, out=dx[s:e])  # dx_c = dlogits @ W
        if dw is not None:
            _gemm_acc(lc.t(), xc, dw)  # dW += dlogits^T @ x_c, fp32
        if db is not None:
            db += lc.sum(0, dtype=torch.float32)


def linear_cross_entropy_forward(x, weight, target, bias=None, *, ignore_index=-100, reduction="mean",
                                 chunk_rows=None, need_x=True, need_weight=True, need_bias=True):
    """Launch the chunked forward. Returns (loss, dx, dW, db): loss a 0-d fp32 tensor; dx (x's
    shape and dtype), dW, db (weight's / bias's dtype) the gradients of the loss itself (upstream
    gradient 1), None where not asked for (db is None without bias). Gradients are computed only
    if one is asked for; then each chunk's logits buffer is overwritten by its dlogits."""
    _check_args(x, weight, target, bias, ignore_index, reduction, chunk_rows)
    v, d = weight.shape
    x2 = x.reshape(-1, d)
    t1 = target.reshape(-1)
    n = x2.shape[0]
    if chunk_rows is None:
        rows = default_chunk_rows(n, d, v)
    else:
        rows = max(1, min(chunk_rows, n, _MAX_CHUNK_ELEMS // v))
    dev, f32 = x.device, torch.float32
    loss_rows = torch.empty(n, device=dev, dtype=f32)
    dx = torch.empty(n, d, device=dev, dtype=x.dtype) if need_x else None
    dw = torch.zeros(v, d, device=dev, dtype=f32) if need_weight else None
    db = torch.zeros(v, device=dev, dtype=f32) if need_bias and bias is not None else None
    _run_chunks(x2, t1, weight, bias, rows, ignore_index, loss_rows, dx, dw, db)
    count = (t1 != ignore_index).sum().to(f32)  # on the device: no host sync
    loss = loss_rows.sum()
    if reduction == "mean":  # 1 / count applied to the results: fp16 dlogits / count would underflow
        loss = loss / count  # 0 / 0 = nan when every row is ignored, as in PyTorch
        scale = torch.where(count > 0, 1.0 / count, 0.0)  # no row, no gradient (not 0 * inf)
        for g in (dx, dw, db):
            if g is not None:
                g.mul_(scale)
    return (loss, dx.view(x.shape) if dx is not None else None,
            dw.to(weight.dtype) if dw is not None else None, db.to(bias.dtype) if db is not None else None)


# ----------------------------------------------------------------------------------------------
# 3. Autograd
# ----------------------------------------------------------------------------------------------
class LinearCrossEntropyFunction(torch.autograd.Function):
    """The gradients are computed in the forward and saved; backward scales them by the
    incoming scalar. Nothing else is saved (not x, not W)."""

    @staticmethod
    def forward(ctx, x, weight, target, bias, ignore_index, reduction, chunk_rows):
        need_x, need_w, _, need_b = ctx.needs_input_grad[:4]
        loss, dx, dw, db = linear_cross_entropy_forward(
            x, weight, target, bias, ignore_index=ignore_index, reduction=reduction,
            chunk_rows=chunk_rows, need_x=need_x, need_weight=need_w, need_bias=need_b)
        ctx.save_for_backward(dx, dw, db)
        return loss

    @staticmethod
    def backward(ctx, grad):
        def scaled(t):  # out of place: a second backward (retain_graph) sees the same saved grads
            return None if t is None else t * grad.to(t.dtype)

        dx, dw, db = ctx.saved_tensors
        return scaled(dx), scaled(dw), None, scaled(db), None, None, None


# ----------------------------------------------------------------------------------------------
# 4. Reference
# ----------------------------------------------------------------------------------------------
def linear_cross_entropy_reference(x, weight, target, bias=None, ignore_index=-100, reduction="mean"):
    """F.cross_entropy(F.linear(x, weight, bias)) over x's rows, the loss in at least fp32
    (the logits are upcast before the cross-entropy); float64 in, float64 out."""
    logits = F.linear(x.reshape(-1, weight.shape[1]), weight, bias)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, target.reshape(-1), ignore_index=ignore_index, reduction=reduction)


# ----------------------------------------------------------------------------------------------
# 5. Public function
# ----------------------------------------------------------------------------------------------
def linear_cross_entropy(x, weight, target, bias=None, *, ignore_index=-100, reduction="mean",
                         chunk_rows=None):
    """F.cross_entropy(F.linear(x, weight, bias), target) without materializing the logits.

    x [..., D] float, weight [V, D], bias [V] or None, target [...] int64; reduction "mean"
    (over non-ignored rows) or "sum"; chunk_rows: rows per chunk (default_chunk_rows: a chunk of
    logits about the size of x, or of W when that is larger). Returns a 0-d fp32 loss,
    differentiable in x, weight and bias.
    """
    _check_args(x, weight, target, bias, ignore_index, reduction, chunk_rows)
    # the interpreter's tl.dot has no bf16 (numpy): on the CPU bf16 takes the reference path
    cpu_bf16 = x.dtype == torch.bfloat16 and not x.is_cuda
    if cpu_bf16 or not use_triton(x, weight, target, bias):
        return linear_cross_entropy_reference(x, weight, target, bias, ignore_index, reduction)
    tensors = (x, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return LinearCrossEntropyFunction.apply(x, weight, target, bias, ignore_index, reduction,
                                                chunk_rows)
    return linear_cross_entropy_forward(x, weight, target, bias, ignore_index=ignore_index,
                                        reduction=reduction, chunk_rows=chunk_rows, need_x=False,
                                        need_weight=False, need_bias=False)[0]
