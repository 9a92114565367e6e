"""Cross-entropy over class logits (class dim LAST), fused log-softmax + NLL in Triton.

logits (..., C) and int64 target (...) are viewed as N = prod(...) rows of C classes.
Forward, one program per row, one pass over the row in blocks of classes with an online
max / sum-exp (the running sum is rescaled by exp(m_old - m_new) when the max grows, one
exp per element): loss = (m - logits[target]) + log(s), lse = m + log(s). Only the per-row loss and
lse (fp32) are stored, never a probability tensor; rows whose target is ignore_index are
not read at all (loss 0). The reduction over rows ("mean" over non-ignored rows, "sum",
"none") is a small PyTorch op on the (N,) losses.
Backward, one program per row, one pass: dlogits = (exp(logits - lse) - onehot(target)) * g_row
with g_row = grad (sum), grad / count (mean) or grad[row] (none); ignored rows get zeros.
The probabilities carry the fp32 rounding of lse, about |lse| * 6e-8 relative: negligible for
ordinary logits, 2e-3 at |logits| ~ 3e4.

Note: the class dim is the last one, unlike F.cross_entropy on inputs of more than 2 dims
(which takes classes at dim 1); for (N, C) inputs the two agree.
Targets outside [0, C) (other than ignore_index) raise ValueError on the CPU; on a GPU they
are not checked (no host sync) and give a NaN loss for that row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, check_float, interpreting, use_triton
from .softmax import _rows

if HAS_TRITON:
    import triton
    import triton.language as tl

_REDUCTIONS = ("mean", "sum", "none")

# ----------------------------------------------------------------------------------------------
# 1. Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _ce_fwd_kernel(
        logits_ptr,  # (N, C) logits, any strides
        target_ptr,  # (N,) int64 class indices
        loss_ptr,  # (N,) fp32 per-row loss out (0 on ignored rows)
        lse_ptr,  # (N,) fp32 per-row logsumexp out (0 on ignored rows)
        C,  # number of classes
        slm, slc,  # strides of logits (row, class)
        stn,  # stride of target
        ignore_index,  # target value whose row is skipped
        BLOCK: tl.constexpr,  # classes per step
    ):
        row = tl.program_id(0).to(tl.int64)
        l_row = logits_ptr + row * slm
        t = tl.load(target_ptr + row * stn)
        valid = t != ignore_index
        cols = tl.arange(0, BLOCK)
        m = float("-inf")  # running max
        s = 0.0  # running sum of exp(x - m)
        for start in range(0, tl.where(valid, C, 0), BLOCK):  # ignored rows are not read
            c = start + cols
            x = tl.load(l_row + c * slc, mask=c < C, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m = m_new
        log_s = tl.log(tl.where(valid, s, 1.0))
        in_range = (t >= 0) & (t < C)
        x_t = tl.load(l_row + t * slc, mask=valid & in_range, other=0.0).to(tl.float32)
        loss = tl.where(in_range, (m - x_t) + log_s, float("nan"))  # not lse - x_t: no rounding of lse
        lse = tl.where(valid, m + log_s, 0.0)
        tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
        tl.store(lse_ptr + row, lse)

    @triton.jit
    def _ce_bwd_kernel(
        logits_ptr,  # (N, C) logits, any strides
        target_ptr,  # (N,) int64 class indices
        lse_ptr,  # (N,) fp32 saved logsumexp
        g_ptr,  # per-row upstream gradient: g_ptr[row * sgn]
        dlogits_ptr,  # (N, C) out, any strides
        C,  # number of classes
        slm, slc,  # strides of logits
        stn,  # stride of target
        sgn,  # stride of g (0: one value for every row)
        sdm, sdc,  # strides of dlogits
        ignore_index,  # target value whose row gets zero gradient
        BLOCK: tl.constexpr,  # classes per step
    ):
        row = tl.program_id(0).to(tl.int64)
        l_row = logits_ptr + row * slm
        d_row = dlogits_ptr + row * sdm
        t = tl.load(target_ptr + row * stn)
        valid = t != ignore_index
        lse = tl.load(lse_ptr + row)
        g = tl.where(valid, tl.load(g_ptr + row * sgn).to(tl.float32), 0.0)
        c_read = tl.where(valid, C, 0)  # ignored rows are not read
        cols = tl.arange(0, BLOCK)
        for start in range(0, C, BLOCK):
            c = start + cols
            mask = c < C
            x = tl.load(l_row + c * slc, mask=c < c_read, other=float("-inf")).to(tl.float32)
            d = (tl.exp(x - lse) - tl.where(c == t, 1.0, 0.0)) * g
            tl.store(d_row + c * sdc, tl.where(valid, d, 0.0), mask=mask)

    # Blocks of classes, warps and pipelining stages; keyed on C only, so a new batch size (or
    # sequence length) never re-tunes.
    _CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w, num_stages=s)
                for b, w, s in [(1024, 4, 2), (2048, 8, 2), (4096, 8, 3), (4096, 16, 2), (8192, 16, 2)]]

    def _prune(configs, nargs, **kwargs):
        """Small vocabularies: keep only blocks no wider than the next power of two >= C."""
        cap = max(1024, triton.next_power_of_2(nargs["C"]))
        return [c for c in configs if c.kwargs["BLOCK"] <= cap]

    _fwd_tuned = triton.autotune(_CONFIGS, key=["C"], prune_configs_by={"early_config_prune": _prune})(
        _ce_fwd_kernel)
    _bwd_tuned = triton.autotune(_CONFIGS, key=["C"], prune_configs_by={"early_config_prune": _prune})(
        _ce_bwd_kernel)

_INTERP_BLOCK = 32  # classes per step under the interpreter (C > 32 takes several steps)


# ----------------------------------------------------------------------------------------------
# 2. Launchers
# ----------------------------------------------------------------------------------------------
def _check_args(logits, target, ignore_index, reduction):
    """ValueError for anything the kernels cannot take."""
    check_float("logits", logits)
    if logits.dim() == 0:
        raise ValueError("logits must have at least 1 dim (classes last), got shape ()")
    if logits.shape[-1] == 0:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    check_target(target, logits, "logits", logits.shape[-1], ignore_index)


def check_target(target, like: torch.Tensor, like_name: str, classes: int, ignore_index) -> None:
    """ValueError unless ``target`` is int64 class indices shaped like ``like``'s rows ([...] for
    ``like`` [..., C]), on its device, each in [0, classes) or ``ignore_index`` (values checked on
    the CPU only, where it costs no device sync). Shared with the fused linear + cross-entropy."""
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
        what = target.dtype if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"target must be an int64 tensor of class indices, got {what}")
    if tuple(target.shape) != tuple(like.shape[:-1]):
        raise ValueError(f"target must have shape {tuple(like.shape[:-1])} for {like_name} of shape "
                         f"{tuple(like.shape)}, got {tuple(target.shape)}")
    if target.device != like.device:
        raise ValueError(f"target ({target.device}) and {like_name} ({like.device}) must be on the same device")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    if not like.is_cuda and target.numel():  # a free check on the CPU; a GPU would need a sync
        bad = (target != ignore_index) & ((target < 0) | (target >= classes))
        if bad.any():
            raise ValueError(f"target has class index {target[bad][0].item()} outside [0, {classes}) "
                             f"(ignore_index={ignore_index})")


def _launch(tuned, plain, grid, *args):
    """Autotuned launch on a GPU, one small block under the interpreter."""
    if interpreting():
        plain[grid](*args, BLOCK=_INTERP_BLOCK)
    else:
        tuned[grid](*args)


def cross_entropy_fwd(logits, target, ignore_index=-100, out=None):
    """Per-row (loss, lse), both fp32 of shape (N,), for logits viewed as (N, C).

    `out` = (loss, lse) buffers may be passed in (used by tests to check every row is written).
    """
    _check_args(logits, target, ignore_index, "none")
    l2 = _rows(logits)
    t1 = target.reshape(-1)
    n, c = l2.shape
    if out is None:
        out = tuple(torch.empty(n, device=logits.device, dtype=torch.float32) for _ in range(2))
    loss, lse = out
    if n:
        _launch(_fwd_tuned, _ce_fwd_kernel, (n,),
                l2, t1, loss, lse, c, *l2.stride(), t1.stride(0), ignore_index)
    return loss, lse


def cross_entropy_bwd(logits, target, lse, grad_rows, ignore_index=-100, out=None):
    """dL/dlogits (shape and dtype of logits) from the saved lse and a per-row gradient.

    grad_rows: a 0-d tensor (the same for every row) or a tensor of target's shape.
    """
    l2 = _rows(logits)
    t1 = target.reshape(-1)
    n, c = l2.shape
    if out is None:
        out = torch.empty(logits.shape, device=logits.device, dtype=logits.dtype)
    elif out.shape != logits.shape or out.dtype != logits.dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {logits.dtype} tensor of shape {tuple(logits.shape)}, "
                         f"got {out.dtype} {tuple(out.shape)}")
    d2 = out.view(n, c)
    g = grad_rows.reshape(-1)
    if n and c:
        _launch(_bwd_tuned, _ce_bwd_kernel, (n,),
                l2, t1, lse, g, d2, c, *l2.stride(), t1.stride(0), g.stride(0) if g.numel() > 1 else 0,
                *d2.stride(), ignore_index)
    return out


# ----------------------------------------------------------------------------------------------
# 3. Autograd
# ----------------------------------------------------------------------------------------------
class CrossEntropyFunction(torch.autograd.Function):
    """Saves logits, target and the fp32 per-row lse (and, for "mean", the non-ignored count)."""

    @staticmethod
    def forward(ctx, logits, target, ignore_index, reduction):
        loss, lse = cross_entropy_fwd(logits, target, ignore_index)
        count = None
        if reduction == "none":
            out = loss.view(target.shape)
        elif reduction == "sum":
            out = loss.sum()
        else:  # 0 / 0 = nan when every row is ignored, as in PyTorch
            count = (target != ignore_index).sum().to(torch.float32)
            out = loss.sum() / count
        ctx.save_for_backward(logits, target, lse, count)
        ctx.conf = (ignore_index, reduction)
        return out.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        logits, target, lse, count = ctx.saved_tensors
        ignore_index, reduction = ctx.conf
        g = grad.to(torch.float32)
        if reduction == "mean":
            g = g / count  # inf when count is 0, but then every row is ignored and gets 0
        dlogits = cross_entropy_bwd(logits, target, lse, g, ignore_index)
        return dlogits, None, None, None


# ----------------------------------------------------------------------------------------------
# 4. Reference
# ----------------------------------------------------------------------------------------------
def cross_entropy_reference(logits, target, ignore_index=-100, reduction="mean"):
    """F.cross_entropy with the class dim last: logits (..., C), target (...)."""
    c = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, c), target.reshape(-1), ignore_index=ignore_index,
                           reduction=reduction)
    return loss.view(target.shape) if reduction == "none" else loss


# ----------------------------------------------------------------------------------------------
# 5. Public function
# ----------------------------------------------------------------------------------------------
def cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    """F.cross_entropy(logits, target, ignore_index=..., reduction=...) with classes last.

    logits (..., C) float, target (...) int64. Differentiable in logits.
    """
    _check_args(logits, target, ignore_index, reduction)
    if use_triton(logits, target):
        return CrossEntropyFunction.apply(logits, target, ignore_index, reduction)
    return cross_entropy_reference(logits, target, ignore_index, reduction)
