"""Softmax and log-softmax over one dimension, row by row in Triton.

The tensor is viewed as rows (the softmax dim moved last); one program owns one row.
Forward:
  * rows up to _MAX_FUSED wide (one block): load the row once, y = exp(x - max) / sum, or
    log_softmax = x - max - log(sum), store once: one read, one write.
  * wider rows: loop 1 walks the row in blocks with an online max / sum-exp (one exp per
    element; the running sum is rescaled by exp(m_old - m_new) when the max grows); loop 2
    writes exp(x - m) / s or (x - m) - log(s).
Backward from the saved output y (nothing else is kept):
  softmax      dx = y * (dy - sum(dy * y))
  log_softmax  dx = dy - exp(y) * sum(dy)
with the row sum in registers for one-block rows, or in a first loop for wider rows.
All arithmetic is fp32; inputs and outputs keep their dtype.
The row helpers here (_rows, _out_rows, prune_row_configs) are shared with norms.py and
cross_entropy.py.
"""
from __future__ import annotations

import torch

from ._common import HAS_TRITON, check_float, interpreting, use_triton

if HAS_TRITON:
    import triton
    import triton.language as tl

# ----------------------------------------------------------------------------------------------
# 1. Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _softmax_fwd_kernel(
        x_ptr,  # input rows (M, D), any strides
        y_ptr,  # output rows (M, D), any strides
        D,  # row width
        sxm, sxd,  # strides of x (row, column)
        sym, syd,  # strides of y (row, column)
        LOG: tl.constexpr,  # write log_softmax instead of softmax
        SINGLE: tl.constexpr,  # the whole row fits in one block
        BLOCK: tl.constexpr,  # columns per step
    ):
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * sxm
        y_row = y_ptr + row * sym
        cols = tl.arange(0, BLOCK)
        if SINGLE:
            mask = cols < D
            x = tl.load(x_row + cols * sxd, mask=mask, other=float("-inf")).to(tl.float32)
            x = x - tl.max(x, axis=0)
            e = tl.exp(x)
            s = tl.sum(e, axis=0)
            if LOG:
                y = x - tl.log(s)
            else:
                y = e / s
            tl.store(y_row + cols * syd, y, mask=mask)
        else:
            m = float("-inf")  # running max
            s = 0.0  # running sum of exp(x - m)
            for start in range(0, D, BLOCK):
                c = start + cols
                x = tl.load(x_row + c * sxd, mask=c < D, other=float("-inf")).to(tl.float32)
                m_new = tl.maximum(m, tl.max(x, axis=0))
                s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
                m = m_new
            log_s = tl.log(s)  # kept apart from m: m + log(s) would round away low bits of large x
            inv_s = 1.0 / s
            for start in range(0, D, BLOCK):
                c = start + cols
                mask = c < D
                x = tl.load(x_row + c * sxd, mask=mask, other=0.0).to(tl.float32) - m
                if LOG:
                    y = x - log_s
                else:
                    y = tl.exp(x) * inv_s
                tl.store(y_row + c * syd, y, mask=mask)

    @triton.jit
    def _softmax_bwd_kernel(
        y_ptr,  # saved forward output (M, D), any strides
        dy_ptr,  # dL/dy (M, D), any strides
        dx_ptr,  # dL/dx out (M, D), any strides
        D,  # row width
        sym, syd,  # strides of y
        sgm, sgd,  # strides of dy
        sxm, sxd,  # strides of dx
        LOG: tl.constexpr,  # y is log_softmax
        SINGLE: tl.constexpr,  # the whole row fits in one block
        BLOCK: tl.constexpr,  # columns per step
    ):
        row = tl.program_id(0).to(tl.int64)
        y_row = y_ptr + row * sym
        g_row = dy_ptr + row * sgm
        x_row = dx_ptr + row * sxm
        cols = tl.arange(0, BLOCK)
        if SINGLE:
            mask = cols < D
            y = tl.load(y_row + cols * syd, mask=mask, other=0.0).to(tl.float32)
            g = tl.load(g_row + cols * sgd, mask=mask, other=0.0).to(tl.float32)
            if LOG:
                dx = g - tl.exp(y) * tl.sum(g, axis=0)
            else:
                dx = y * (g - tl.sum(g * y, axis=0))
            tl.store(x_row + cols * sxd, dx, mask=mask)
        else:
            acc = tl.zeros([BLOCK], dtype=tl.float32)  # per-lane partial of sum(dy) or sum(dy*y)
            for start in range(0, D, BLOCK):
                c = start + cols
                mask = c < D
                g = tl.load(g_row + c * sgd, mask=mask, other=0.0).to(tl.float32)
                if LOG:
                    acc += g
                else:
                    acc += g * tl.load(y_row + c * syd, mask=mask, other=0.0).to(tl.float32)
            total = tl.sum(acc, axis=0)
            for start in range(0, D, BLOCK):
                c = start + cols
                mask = c < D
                y = tl.load(y_row + c * syd, mask=mask, other=0.0).to(tl.float32)
                g = tl.load(g_row + c * sgd, mask=mask, other=0.0).to(tl.float32)
                if LOG:
                    dx = g - tl.exp(y) * total
                else:
                    dx = y * (g - total)
                tl.store(x_row + c * sxd, dx, mask=mask)

    def prune_row_configs(configs, nargs, **kwargs):
        """Keep the configs that give each thread between 1 and 32 elements of a BLOCK-wide row."""
        block = kwargs["BLOCK"]
        kept = [c for c in configs if 32 * c.num_warps <= block <= 1024 * c.num_warps]
        return kept or [min(configs, key=lambda c: c.num_warps)]

    # One-block rows: only the warp count is tuned (BLOCK = next power of two >= D).
    _ROW_CONFIGS = [triton.Config({}, num_warps=w) for w in (2, 4, 8, 16, 32)]
    # Wide rows: block width, warps and pipelining stages of the two loops.
    _LOOP_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w, num_stages=s)
                     for b, w, s in [(2048, 4, 2), (2048, 8, 3), (4096, 8, 2), (4096, 16, 3), (8192, 16, 2)]]
    # Keys are the row width only: a new batch size never re-tunes.
    _fwd_row = triton.autotune(_ROW_CONFIGS, key=["D"], prune_configs_by={"early_config_prune": prune_row_configs})(
        _softmax_fwd_kernel)
    _fwd_loop = triton.autotune(_LOOP_CONFIGS, key=["D"])(_softmax_fwd_kernel)
    _bwd_row = triton.autotune(_ROW_CONFIGS, key=["D"], prune_configs_by={"early_config_prune": prune_row_configs})(
        _softmax_bwd_kernel)
    _bwd_loop = triton.autotune(_LOOP_CONFIGS, key=["D"])(_softmax_bwd_kernel)

_MAX_FUSED = 32768  # widest row kept in registers on a GPU
_INTERP_BLOCK = 32  # block under the interpreter: rows wider than this take the two-loop path


# ----------------------------------------------------------------------------------------------
# 2. Launchers
# ----------------------------------------------------------------------------------------------
def _rows(t: torch.Tensor) -> torch.Tensor:
    """(M, D) view of t's leading dims (a copy only when they cannot be flattened as a view).

    On a GPU a row whose elements are not adjacent is copied first: strided loads would not
    coalesce. (The interpreter keeps the strides, so tests exercise them.)
    """
    if t.is_cuda and t.dim() and t.stride(-1) > 1 and t.shape[-1] > 1:
        t = t.contiguous()
    return t.reshape(-1, t.shape[-1]) if t.dim() != 1 else t.unsqueeze(0)


def _launch(row_kernel, loop_kernel, plain, m, d, *args, **flags):
    """One program per row; one block per row when it fits, else the two-loop kernel."""
    if interpreting():
        block = min(triton.next_power_of_2(d), _INTERP_BLOCK)
        plain[(m,)](*args, **flags, SINGLE=block >= d, BLOCK=block)
    elif triton.next_power_of_2(d) <= _MAX_FUSED:
        row_kernel[(m,)](*args, **flags, SINGLE=True, BLOCK=triton.next_power_of_2(d))
    else:
        loop_kernel[(m,)](*args, **flags, SINGLE=False)


def _out_rows(out: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The result tensor (`out` or a new contiguous one shaped like `like`) and its (M, D) view."""
    if out is None:
        out = torch.empty(like.shape, device=like.device, dtype=like.dtype)
    elif out.shape != like.shape or out.dtype != like.dtype or out.device != like.device or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {like.dtype} tensor of shape {tuple(like.shape)} on "
                         f"{like.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")
    return out, _rows(out)


def softmax_fwd(x: torch.Tensor, log: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """softmax (or log_softmax when `log`) over the last dim of x, written into `out` if given."""
    check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim, got shape ()")
    y, y2 = _out_rows(out, x)
    if x.numel() == 0:
        return y
    x2 = _rows(x)
    m, d = x2.shape
    _launch(_fwd_row, _fwd_loop, _softmax_fwd_kernel,
            m, d, x2, y2, d, *x2.stride(), *y2.stride(), LOG=log)
    return y


def softmax_bwd(y: torch.Tensor, dy: torch.Tensor, log: bool = False,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """dL/dx over the last dim from the forward output y (softmax, or log_softmax when `log`)."""
    if dy.shape != y.shape:
        raise ValueError(f"dy must have the shape of y {tuple(y.shape)}, got {tuple(dy.shape)}")
    dx, dx2 = _out_rows(out, y)
    if y.numel() == 0:
        return dx
    y2, g2 = _rows(y), _rows(dy)
    m, d = y2.shape
    _launch(_bwd_row, _bwd_loop, _softmax_bwd_kernel,
            m, d, y2, g2, dx2, d, *y2.stride(), *g2.stride(), *dx2.stride(), LOG=log)
    return dx


# ----------------------------------------------------------------------------------------------
# 3. Autograd
# ----------------------------------------------------------------------------------------------
class SoftmaxFunction(torch.autograd.Function):
    """softmax / log_softmax over the last dim; saves only the output."""

    @staticmethod
    def forward(ctx, x, log):
        y = softmax_fwd(x, log)
        ctx.save_for_backward(y)
        ctx.log = log
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return softmax_bwd(y, dy, ctx.log), None


# ----------------------------------------------------------------------------------------------
# 4. References
# ----------------------------------------------------------------------------------------------
def softmax_reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch.softmax in plain PyTorch (exp(x - max) / sum)."""
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


def log_softmax_reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch.log_softmax in plain PyTorch (x - max - log(sum(exp(x - max))))."""
    z = x - x.amax(dim, keepdim=True)
    return z - torch.log(torch.exp(z).sum(dim, keepdim=True))


# ----------------------------------------------------------------------------------------------
# 5. Public functions
# ----------------------------------------------------------------------------------------------
def _dispatch(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim, got shape ()")
    if not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must be an int in [{-x.dim()}, {x.dim()}) for x of shape {tuple(x.shape)}, got {dim!r}")
    if not use_triton(x):
        return (log_softmax_reference if log else softmax_reference)(x, dim)
    last = dim % x.dim() == x.dim() - 1
    y = SoftmaxFunction.apply(x if last else x.movedim(dim, -1), log)
    return y if last else y.movedim(-1, dim)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch.softmax(x, dim): Triton on CUDA (or under the interpreter), the reference elsewhere."""
    return _dispatch(x, dim, log=False)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch.log_softmax(x, dim): Triton on CUDA (or under the interpreter), the reference elsewhere."""
    return _dispatch(x, dim, log=True)
