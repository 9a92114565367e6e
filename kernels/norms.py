"""LayerNorm and RMSNorm over the last dimension in Triton (one pair of kernels serves both).

x is viewed as rows (M, D). With xhat = (x - mean) * rstd (RMSNorm: mean = 0,
rstd = 1 / sqrt(mean(x^2) + eps); LayerNorm: rstd = 1 / sqrt(var + eps), biased variance):
Forward, one program per row: y = xhat * w + b; saves mean (LayerNorm) and rstd per row (fp32).
  Rows up to _MAX_FUSED wide are loaded once (one read, one write); wider rows loop over
  blocks: mean, then variance of (x - mean) (two-pass, no E[x^2] - E[x]^2 cancellation), then y.
Backward, fused: P row chunks (two per SM), each a contiguous run of rows. Per row, g = dy * w,
  c1 = mean(xhat * g), c2 = mean(g) (0 for RMSNorm):  dx = (g - xhat * c1 - c2) * rstd,
  and the program accumulates dw += dy * xhat and db += dy for its rows in fp32. It stores
  those sums as row `pid` of a (P, D) partial buffer; a second small reduction (sum over P)
  gives dw, db. No atomics, so results are deterministic, and every store is a plain write,
  so a re-run (autotuning) gives the same result.
  One-block rows may split their columns over SPLITS adjacent programs (autotuned; at 16K
  columns a full row of x, dy plus fp32 dw, db accumulators would not fit in registers): each
  reads the whole row for c1, c2 (the SPLITS programs run side by side, so the repeats come
  from L2), then writes dx and accumulates dw, db for its 1/SPLITS of the columns only.
  Rows wider than _MAX_FUSED: the program first computes (c1, c2) of each of its rows into a
  small scratch, then walks column blocks, and for each block its rows (a second read of x and
  dy), writing dx and the block's partials.
"""
from __future__ import annotations

import torch

from ._common import HAS_TRITON, check_float, check_same, interpreting, use_triton
from .softmax import _out_rows, _rows

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .softmax import prune_row_configs

# ----------------------------------------------------------------------------------------------
# 1. Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _norm_fwd_kernel(
        x_ptr,  # input rows (M, D), any strides
        w_ptr,  # weight (D,), read when HAS_W
        b_ptr,  # bias (D,), read when HAS_B
        y_ptr,  # output rows (M, D), any strides
        mean_ptr,  # (M,) fp32 row means out, written unless IS_RMS
        rstd_ptr,  # (M,) fp32 reciprocal standard deviations out
        D,  # row width
        sxm, sxd,  # strides of x
        sym, syd,  # strides of y
        swd, sbd,  # strides of weight, bias
        eps,  # added to the variance (or to mean(x^2))
        IS_RMS: tl.constexpr,  # RMSNorm: no mean subtraction, no bias
        HAS_W: tl.constexpr,  # scale by weight
        HAS_B: tl.constexpr,  # add bias
        SINGLE: tl.constexpr,  # the whole row fits in one block
        BLOCK: tl.constexpr,  # columns per step
    ):
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * sxm
        y_row = y_ptr + row * sym
        cols = tl.arange(0, BLOCK)
        if SINGLE:
            mask = cols < D
            x = tl.load(x_row + cols * sxd, mask=mask, other=0.0).to(tl.float32)
            if IS_RMS:
                xc = x
            else:
                mean = tl.sum(x, axis=0) / D
                xc = tl.where(mask, x - mean, 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / D + eps)
            y = xc * rstd
            if HAS_W:
                y = y * tl.load(w_ptr + cols * swd, mask=mask, other=0.0).to(tl.float32)
            if HAS_B:
                y = y + tl.load(b_ptr + cols * sbd, mask=mask, other=0.0).to(tl.float32)
            tl.store(y_row + cols * syd, y, mask=mask)
        else:
            mean = 0.0
            if not IS_RMS:
                acc = tl.zeros([BLOCK], dtype=tl.float32)
                for start in range(0, D, BLOCK):
                    c = start + cols
                    acc += tl.load(x_row + c * sxd, mask=c < D, other=0.0).to(tl.float32)
                mean = tl.sum(acc, axis=0) / D
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(0, D, BLOCK):
                c = start + cols
                mask = c < D
                x = tl.load(x_row + c * sxd, mask=mask, other=0.0).to(tl.float32)
                xc = tl.where(mask, x - mean, 0.0)
                acc += xc * xc
            rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / D + eps)
            for start in range(0, D, BLOCK):
                c = start + cols
                mask = c < D
                x = tl.load(x_row + c * sxd, mask=mask, other=0.0).to(tl.float32)
                y = (x - mean) * rstd
                if HAS_W:
                    y = y * tl.load(w_ptr + c * swd, mask=mask, other=0.0).to(tl.float32)
                if HAS_B:
                    y = y + tl.load(b_ptr + c * sbd, mask=mask, other=0.0).to(tl.float32)
                tl.store(y_row + c * syd, y, mask=mask)
        if not IS_RMS:
            tl.store(mean_ptr + row, mean)
        tl.store(rstd_ptr + row, rstd)

    @triton.jit
    def _norm_bwd_kernel(
        x_ptr,  # forward input rows (M, D), any strides
        w_ptr,  # weight (D,), read when HAS_W
        dy_ptr,  # dL/dy rows (M, D), any strides
        dx_ptr,  # dL/dx rows out (M, D), any strides
        mean_ptr,  # (M,) fp32 saved row means (unused when IS_RMS)
        rstd_ptr,  # (M,) fp32 saved reciprocal standard deviations
        dw_ptr,  # (P, D) fp32 out: this program's sum of dy * xhat, when NEED_DW
        db_ptr,  # (P, D) fp32 out: this program's sum of dy, when NEED_DB
        stat_ptr,  # (M, 2) fp32 scratch for wide rows: (c1, c2) of each row
        M,  # number of rows
        D,  # row width
        ROWS,  # rows per program
        sxm, sxd,  # strides of x
        sgm, sgd,  # strides of dy
        sdm, sdd,  # strides of dx
        swd,  # stride of weight
        IS_RMS: tl.constexpr,  # RMSNorm (mean = 0, c2 = 0)
        HAS_W: tl.constexpr,  # g = dy * w (else g = dy)
        NEED_DW: tl.constexpr,  # write dw partials
        NEED_DB: tl.constexpr,  # write db partials
        SINGLE: tl.constexpr,  # the whole row fits in one block
        SPLITS: tl.constexpr,  # one-block rows: programs sharing each row's columns
        BLOCK: tl.constexpr,  # columns per step
    ):
        pid = tl.program_id(0) // SPLITS  # row chunk (its SPLITS programs are adjacent)
        r_lo = pid.to(tl.int64) * ROWS  # int64 rows: row * stride may pass 2**31
        r_hi = tl.minimum(r_lo + ROWS, M)
        cols = tl.arange(0, BLOCK)
        part = pid.to(tl.int64) * D  # this program's row of the partial buffers
        if SINGLE:
            mask = cols < D
            # This program's share of the columns (all of them when SPLITS == 1), see the docstring.
            pcols = (tl.program_id(0) % SPLITS) * (BLOCK // SPLITS) + tl.arange(0, BLOCK // SPLITS)
            pmask = pcols < D
            pw = 1.0
            if HAS_W:
                pw = tl.load(w_ptr + pcols * swd, mask=pmask, other=0.0).to(tl.float32)
            dw = tl.zeros([BLOCK // SPLITS], dtype=tl.float32)
            db = tl.zeros([BLOCK // SPLITS], dtype=tl.float32)
            for row in range(r_lo, r_hi):
                mean = 0.0
                if not IS_RMS:
                    mean = tl.load(mean_ptr + row)
                rstd = tl.load(rstd_ptr + row)
                x = tl.load(x_ptr + row * sxm + cols * sxd, mask=mask, other=0.0).to(tl.float32)
                dy = tl.load(dy_ptr + row * sgm + cols * sgd, mask=mask, other=0.0).to(tl.float32)
                xhat = tl.where(mask, (x - mean) * rstd, 0.0)
                if SPLITS == 1:
                    g = dy * pw
                elif HAS_W:  # the whole row of w (L1 hits)
                    g = dy * tl.load(w_ptr + cols * swd, mask=mask, other=0.0).to(tl.float32)
                else:
                    g = dy
                c1 = tl.sum(xhat * g, axis=0) / D
                c2 = 0.0
                if not IS_RMS:
                    c2 = tl.sum(g, axis=0) / D
                if SPLITS > 1:  # reload this program's columns (L1 hits)
                    x = tl.load(x_ptr + row * sxm + pcols * sxd, mask=pmask, other=0.0).to(tl.float32)
                    dy = tl.load(dy_ptr + row * sgm + pcols * sgd, mask=pmask, other=0.0).to(tl.float32)
                    xhat = tl.where(pmask, (x - mean) * rstd, 0.0)
                    g = dy * pw
                tl.store(dx_ptr + row * sdm + pcols * sdd, (g - xhat * c1 - c2) * rstd, mask=pmask)
                if NEED_DW:
                    dw += dy * xhat
                if NEED_DB:
                    db += dy
            if NEED_DW:
                tl.store(dw_ptr + part + pcols, dw, mask=pmask)
            if NEED_DB:
                tl.store(db_ptr + part + pcols, db, mask=pmask)
        else:
            # Phase A: (c1, c2) of each row, through the scratch.
            for row in range(r_lo, r_hi):
                mean = 0.0
                if not IS_RMS:
                    mean = tl.load(mean_ptr + row)
                rstd = tl.load(rstd_ptr + row)
                acc1 = tl.zeros([BLOCK], dtype=tl.float32)
                acc2 = tl.zeros([BLOCK], dtype=tl.float32)
                for start in range(0, D, BLOCK):
                    c = start + cols
                    mask = c < D
                    x = tl.load(x_ptr + row * sxm + c * sxd, mask=mask, other=0.0).to(tl.float32)
                    g = tl.load(dy_ptr + row * sgm + c * sgd, mask=mask, other=0.0).to(tl.float32)
                    if HAS_W:
                        g = g * tl.load(w_ptr + c * swd, mask=mask, other=0.0).to(tl.float32)
                    acc1 += tl.where(mask, (x - mean) * rstd, 0.0) * g
                    acc2 += g
                tl.store(stat_ptr + 2 * row, tl.sum(acc1, axis=0) / D)
                tl.store(stat_ptr + 2 * row + 1, tl.sum(acc2, axis=0) / D)
            tl.debug_barrier()  # the scratch written above is read by other threads below
            # Phase B: column blocks outer, rows inner, so the partials stay in registers.
            for start in range(0, D, BLOCK):
                c = start + cols
                mask = c < D
                w = 1.0
                if HAS_W:
                    w = tl.load(w_ptr + c * swd, mask=mask, other=0.0).to(tl.float32)
                dw = tl.zeros([BLOCK], dtype=tl.float32)
                db = tl.zeros([BLOCK], dtype=tl.float32)
                for row in range(r_lo, r_hi):
                    mean = 0.0
                    if not IS_RMS:
                        mean = tl.load(mean_ptr + row)
                    rstd = tl.load(rstd_ptr + row)
                    x = tl.load(x_ptr + row * sxm + c * sxd, mask=mask, other=0.0).to(tl.float32)
                    dy = tl.load(dy_ptr + row * sgm + c * sgd, mask=mask, other=0.0).to(tl.float32)
                    xhat = tl.where(mask, (x - mean) * rstd, 0.0)
                    dx = dy * w - xhat * tl.load(stat_ptr + 2 * row)
                    if not IS_RMS:
                        dx -= tl.load(stat_ptr + 2 * row + 1)
                    tl.store(dx_ptr + row * sdm + c * sdd, dx * rstd, mask=mask)
                    if NEED_DW:
                        dw += dy * xhat
                    if NEED_DB:
                        db += dy
                if NEED_DW:
                    tl.store(dw_ptr + part + c, dw, mask=mask)
                if NEED_DB:
                    tl.store(db_ptr + part + c, db, mask=mask)

    def _prune_bwd(configs, nargs, **kwargs):
        """Row configs that fit (see prune_row_configs); column splits only for rows >= 8K wide."""
        block = kwargs["BLOCK"]
        kept = [c for c in prune_row_configs(configs, nargs, **kwargs)
                if c.kwargs["SPLITS"] == 1 or (block >= 8192 and block // c.kwargs["SPLITS"] >= 32 * c.num_warps)]
        return kept or [configs[0]]

    # One-block rows: the warp count is tuned (BLOCK = next power of two >= D), and for the
    # backward the column split (16K-wide rows need it to keep dw/db in registers). Wide rows:
    # block width, warps and stages. Keys are the row width only: a new batch size never re-tunes.
    _ROW_CONFIGS = [triton.Config({}, num_warps=w) for w in (2, 4, 8, 16, 32)]
    _BWD_ROW_CONFIGS = [triton.Config({"SPLITS": s}, num_warps=w)
                        for w, s in [(2, 1), (4, 1), (8, 1), (16, 1), (32, 1), (16, 2), (32, 2), (16, 4), (32, 4)]]
    _LOOP_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w, num_stages=s)
                     for b, w, s in [(1024, 4, 2), (2048, 8, 2), (2048, 8, 3), (4096, 16, 2)]]
    _fwd_row = triton.autotune(_ROW_CONFIGS, key=["D"], prune_configs_by={"early_config_prune": prune_row_configs})(
        _norm_fwd_kernel)
    _fwd_loop = triton.autotune(_LOOP_CONFIGS, key=["D"])(_norm_fwd_kernel)
    _bwd_row = triton.autotune(_BWD_ROW_CONFIGS, key=["D"], prune_configs_by={"early_config_prune": _prune_bwd})(
        _norm_bwd_kernel)
    _bwd_loop = triton.autotune(_LOOP_CONFIGS, key=["D"])(_norm_bwd_kernel)

_MAX_FUSED = 16384  # widest row kept in registers on a GPU
_INTERP_BLOCK = 32  # block under the interpreter: rows wider than this take the looped path
_INTERP_PROGRAMS = 3  # backward row chunks under the interpreter (several rows each, ragged tail)


# ----------------------------------------------------------------------------------------------
# 2. Launchers
# ----------------------------------------------------------------------------------------------
def _check_args(x, weight, bias, rms):
    """ValueError for anything the kernels cannot take."""
    check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim, got shape ()")
    d = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if rms and name == "bias":
            raise ValueError("rms_norm takes no bias")
        check_float(name, t)
        check_same("x", x, name, t)
        if tuple(t.shape) != (d,):
            raise ValueError(f"{name} must have shape ({d},) for x of shape {tuple(x.shape)}, got {tuple(t.shape)}")


def _block(d: int) -> tuple[int, bool]:
    """(BLOCK, SINGLE): one block per row when it fits; a small block when interpreting."""
    if interpreting():
        block = min(triton.next_power_of_2(d), _INTERP_BLOCK)
        return block, block >= d
    block = triton.next_power_of_2(d)
    return (block, True) if block <= _MAX_FUSED else (None, False)


def norm_fwd(x, weight=None, bias=None, eps=1e-5, rms=False, out=None):
    """LayerNorm (or RMSNorm when `rms`) over the last dim; returns (y, mean or None, rstd).

    mean and rstd are fp32 with x's leading shape flattened to (M,).
    """
    _check_args(x, weight, bias, rms)
    y, y2 = _out_rows(out, x)
    x2 = _rows(x)
    m, d = x2.shape
    mean = None if rms else torch.empty(m, device=x.device, dtype=torch.float32)
    rstd = torch.empty(m, device=x.device, dtype=torch.float32)
    if x.numel() == 0:
        return y, mean, rstd
    block, single = _block(d)
    kernel = _norm_fwd_kernel if interpreting() else _fwd_row if single else _fwd_loop
    kernel[(m,)](x2, weight if weight is not None else x2, bias if bias is not None else x2, y2,
                 mean if mean is not None else rstd, rstd, d, *x2.stride(), *y2.stride(),
                 weight.stride(0) if weight is not None else 0, bias.stride(0) if bias is not None else 0,
                 float(eps), IS_RMS=rms, HAS_W=weight is not None, HAS_B=bias is not None,
                 SINGLE=single, **({"BLOCK": block} if block else {}))
    return y, mean, rstd


def norm_bwd(dy, x, weight, mean, rstd, need_dw=True, need_db=False, out=None, programs=None):
    """(dx, dw, db) of LayerNorm (RMSNorm when mean is None); dw/db are None unless asked for.

    `programs`: how many row chunks (= partial sums of dw/db) to use; default two per SM.
    """
    rms = mean is None
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {tuple(x.shape)}, got {tuple(dy.shape)}")
    dx, dx2 = _out_rows(out, x)
    x2, g2 = _rows(x), _rows(dy)
    m, d = x2.shape
    need_dw = need_dw and weight is not None
    if programs is None:
        programs = _INTERP_PROGRAMS if interpreting() else 2 * torch.cuda.get_device_properties(
            x.device).multi_processor_count
    rows = triton.cdiv(m, max(1, min(programs, m)))
    p = triton.cdiv(m, rows) if m else 0
    dw = torch.empty((p, d), device=x.device, dtype=torch.float32) if need_dw else None
    db = torch.empty((p, d), device=x.device, dtype=torch.float32) if need_db else None
    if x.numel() == 0:
        z = torch.zeros(d, device=x.device, dtype=x.dtype)
        return dx, (z if need_dw else None), (z.clone() if need_db else None)
    block, single = _block(d)
    stat = rstd if single else torch.empty((m, 2), device=x.device, dtype=torch.float32)
    meta = {"SINGLE": single}
    if block:
        meta["BLOCK"] = block
    if interpreting():  # split the columns of 32-wide rows, to test that path too
        kernel, meta["SPLITS"] = _norm_bwd_kernel, 2 if single and block == _INTERP_BLOCK else 1
    elif single:
        kernel = _bwd_row
    else:
        kernel, meta["SPLITS"] = _bwd_loop, 1
    grid = lambda cfg: (p * cfg["SPLITS"],)  # noqa: E731
    kernel[grid](x2, weight if weight is not None else x2, g2, dx2, mean if mean is not None else rstd, rstd,
                 dw if dw is not None else rstd, db if db is not None else rstd, stat,
                 m, d, rows, *x2.stride(), *g2.stride(), *dx2.stride(),
                 weight.stride(0) if weight is not None else 0,
                 IS_RMS=rms, HAS_W=weight is not None, NEED_DW=need_dw, NEED_DB=need_db, **meta)
    dw = dw.sum(0).to(x.dtype) if need_dw else None
    db = db.sum(0).to(x.dtype) if need_db else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# 3. Autograd
# ----------------------------------------------------------------------------------------------
class NormFunction(torch.autograd.Function):
    """LayerNorm / RMSNorm; saves x, weight and the fp32 row statistics (not the output)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, rms):
        y, mean, rstd = norm_fwd(x, weight, bias, eps, rms)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dw, db = norm_bwd(dy, x, weight, mean, rstd,
                              need_dw=ctx.needs_input_grad[1], need_db=ctx.needs_input_grad[2])
        return dx, dw, db, None, None


# ----------------------------------------------------------------------------------------------
# 4. References
# ----------------------------------------------------------------------------------------------
def layer_norm_reference(x, weight=None, bias=None, eps=1e-5):
    """F.layer_norm(x, (D,), weight, bias, eps) in plain PyTorch (biased variance)."""
    mean = x.mean(-1, keepdim=True)
    y = (x - mean) * torch.rsqrt((x - mean).pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def rms_norm_reference(x, weight=None, eps=1e-6):
    """x * rsqrt(mean(x^2) + eps) * weight in plain PyTorch."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


# ----------------------------------------------------------------------------------------------
# 5. Public functions
# ----------------------------------------------------------------------------------------------
def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """F.layer_norm(x, (x.shape[-1],), weight, bias, eps); weight and bias may be None."""
    _check_args(x, weight, bias, rms=False)
    if use_triton(x, weight, bias):
        return NormFunction.apply(x, weight, bias, eps, False)
    return layer_norm_reference(x, weight, bias, eps)


def rms_norm(x, weight=None, eps=1e-6):
    """x * rsqrt(mean(x^2, -1) + eps) * weight over the last dim; weight may be None."""
    _check_args(x, weight, None, rms=True)
    if use_triton(x, weight):
        return NormFunction.apply(x, weight, None, eps, True)
    return rms_norm_reference(x, weight, eps)
