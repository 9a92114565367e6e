"""2-D convolution (NCHW) with a fused bias + activation epilogue, as implicit GEMMs in Triton.

Forward, per group g:  y[m, co] = act(sum_k A[m, k] * B[k, co] + bias[co]) with
    m = (n, oh, ow)  over N*Hout*Wout output pixels,
    k = (kh, kw, c)  over KH*KW*Cin/groups, c innermost,
    A[m, k] = x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]  (0 outside the image),
gathered tile by tile from x by index arithmetic (no im2col tensor). The K loop walks the taps
(kh, kw) and, inside each tap, blocks of channels, so the spatial bounds mask is computed once
per tap and the channel loads are contiguous when x is channels-last (the launcher makes it so).

Backward (dz = dy * act'(.), written once in NHWC by `_conv2d_dz_kernel`, which also reduces
db over N*Hout*Wout in per-tile partial sums):
  dx  implicit GEMM over input pixels: dx[n, c, ih, iw] = sum over (co, kh, kw) of
      dz[n, co, oh, ow] * w[co, c, kh, kw] where ih = oh*sh - ph + kh*dh. Input pixels are split
      by stride phase (ih mod sh, iw mod sw) on a grid axis: inside one phase the taps that hit a
      whole output pixel are the same for every pixel (an arithmetic progression of kernel rows /
      columns, from a tiny host-built table read once) and oh = ih // sh + const exactly, so the
      kernel needs no divisibility mask, only the output-range mask, and does none of the
      (sh*sw - 1)/(sh*sw) share of masked-off tap work a plain masked gather would do.
  dw  implicit GEMM per tap: dw[co, c, kh, kw] = sum over m of dz[m, co] * A[m, (kh, kw, c)],
      the reduction over m split across a grid axis into fp32 partials summed afterwards.
Layouts: the kernels take any strides; the launchers pass channels-last x / dz and weights laid
out (KH, KW, Cin/g, Cout) (or (KH, KW, Cout, Cin/g) for dx), so every gathered tile is contiguous
along channels (16-byte async copies on a GPU). y and dx come back in x's memory format (NCHW, or
channels-last when x is), like F.conv2d.
Activation gradient: relu, sigmoid and tanh are differentiated from the saved OUTPUT y
(y > 0, y(1-y), 1-y^2); gelu (exact, erf) and silu need the PRE-activation z, which the forward
epilogue then stores as a second output. No activation: nothing extra is saved.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, check_float, check_same, interpreting, use_triton

if HAS_TRITON:
    import triton
    import triton.language as tl

# activation name -> (code used by the kernels, which tensor the backward saves)
_ACTS = {
    None: (0, None),
    "none": (0, None),
    "relu": (1, "output"),
    "gelu": (2, "preact"),
    "silu": (3, "preact"),
    "sigmoid": (4, "output"),
    "tanh": (5, "output"),
}

# ----------------------------------------------------------------------------------------------
# 1. Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _act_fwd(z, ACT: tl.constexpr):
        """Activation of an fp32 tile (codes as in _ACTS)."""
        if ACT == 1:
            z = tl.maximum(z, 0.0)
        elif ACT == 2:
            z = 0.5 * z * (1.0 + tl.erf(z * 0.7071067811865476))
        elif ACT == 3:
            z = z * tl.sigmoid(z)
        elif ACT == 4:
            z = tl.sigmoid(z)
        elif ACT == 5:
            z = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
        return z

    @triton.jit
    def _act_bwd(g, s, ACT: tl.constexpr):
        """dL/dz from dL/dy `g` and the saved tile `s` (output y for relu/sigmoid/tanh, z else)."""
        if ACT == 1:
            g = tl.where(s > 0.0, g, 0.0)
        elif ACT == 2:
            cdf = 0.5 * (1.0 + tl.erf(s * 0.7071067811865476))
            pdf = tl.exp(-0.5 * s * s) * 0.3989422804014327
            g = g * (cdf + s * pdf)
        elif ACT == 3:
            sg = tl.sigmoid(s)
            g = g * sg * (1.0 + s * (1.0 - sg))
        elif ACT == 4:
            g = g * s * (1.0 - s)
        elif ACT == 5:
            g = g * (1.0 - s * s)
        return g

    @triton.jit
    def _conv2d_fwd_kernel(
        x_ptr,  # input (N, C, H, W), any strides
        w_ptr,  # weight (Cout, C/groups, KH, KW), any strides
        b_ptr,  # bias (Cout,) or a dummy when HAS_BIAS is False
        y_ptr,  # output (N, Cout, Hout, Wout), activation applied
        z_ptr,  # pre-activation output (same shape), written only when SAVE_Z
        NB,  # batch size N
        C_G,  # input channels per group
        H, W,  # input height, width
        CO_G,  # output channels per group
        HO, WO,  # output height, width
        sxn, sxc, sxh, sxw,  # strides of x
        swo, swc, swh, sww,  # strides of weight
        syn, syc, syh, syw,  # strides of y
        szn, szc, szh, szw,  # strides of z
        SH, SW,  # stride
        PH, PW,  # padding
        DH, DW,  # dilation
        KH: tl.constexpr,  # kernel height
        KW: tl.constexpr,  # kernel width
        HAS_BIAS: tl.constexpr,  # add bias in the epilogue
        ACT: tl.constexpr,  # activation code
        SAVE_Z: tl.constexpr,  # also store the pre-activation
        BLOCK_M: tl.constexpr,  # output pixels per tile
        BLOCK_N: tl.constexpr,  # output channels per tile
        BLOCK_K: tl.constexpr,  # input channels per K step
    ):
        num_n = tl.cdiv(CO_G, BLOCK_N)
        pid_n = tl.program_id(0) % num_n  # output-channel tiles of one pixel tile run side by side
        pid_m = tl.program_id(0) // num_n
        g = tl.program_id(1)  # group

        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_m = offs_m < NB * HO * WO
        n_idx = offs_m // (HO * WO)
        oh = (offs_m % (HO * WO)) // WO
        ow = offs_m % WO
        ih0 = oh * SH - PH
        iw0 = ow * SW - PW
        x_row = x_ptr + n_idx.to(tl.int64) * sxn + g * C_G * sxc  # [BLOCK_M] pointers

        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < CO_G
        co = g * CO_G + offs_n
        offs_k = tl.arange(0, BLOCK_K)

        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        num_cb = tl.cdiv(C_G, BLOCK_K)
        for it in range(0, KH * KW * num_cb):
            tap = it // num_cb
            c = (it - tap * num_cb) * BLOCK_K + offs_k
            kh = tap // KW
            kw = tap % KW
            ih = ih0 + kh * DH
            iw = iw0 + kw * DW
            ok_m = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            mask_c = c < C_G
            a = tl.load(
                x_row[:, None] + ih[:, None] * sxh + iw[:, None] * sxw + c[None, :] * sxc,
                mask=ok_m[:, None] & mask_c[None, :],
                other=0.0,
            )
            b = tl.load(
                w_ptr + co[None, :] * swo + c[:, None] * swc + kh * swh + kw * sww,
                mask=mask_c[:, None] & mask_n[None, :],
                other=0.0,
            )
            acc = tl.dot(a, b, acc)

        if HAS_BIAS:
            acc += tl.load(b_ptr + co, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        mask = mask_m[:, None] & mask_n[None, :]
        if SAVE_Z:
            z_off = n_idx.to(tl.int64) * szn + oh * szh + ow * szw
            tl.store(z_ptr + z_off[:, None] + co[None, :] * szc, acc, mask=mask)
        out = _act_fwd(acc, ACT)
        y_off = n_idx.to(tl.int64) * syn + oh * syh + ow * syw
        tl.store(y_ptr + y_off[:, None] + co[None, :] * syc, out, mask=mask)

    @triton.jit
    def _conv2d_dz_kernel(
        dy_ptr,  # dL/dy (N, Cout, Hout, Wout), any strides
        s_ptr,  # saved tensor for the activation gradient (y or z), any strides
        dz_ptr,  # dL/dz out, any strides (the launcher passes NHWC)
        db_ptr,  # fp32 partial bias grads (num_m_tiles, Cout), written when HAS_BIAS
        M,  # N * Hout * Wout
        C,  # Cout
        HO, WO,  # output height, width
        sgn, sgc, sgh, sgw,  # strides of dy
        ssn, ssc, ssh, ssw,  # strides of the saved tensor
        sdn, sdc, sdh, sdw,  # strides of dz
        ACT: tl.constexpr,  # activation code
        HAS_BIAS: tl.constexpr,  # reduce db partials
        BLOCK_M: tl.constexpr,  # pixels per tile
        BLOCK_C: tl.constexpr,  # channels per tile
    ):
        pid_m = tl.program_id(0)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_m = offs_m < M
        mask_c = offs_c < C
        mask = mask_m[:, None] & mask_c[None, :]
        n_idx = offs_m.to(tl.int64) // (HO * WO)
        oh = (offs_m % (HO * WO)) // WO
        ow = offs_m % WO
        g = tl.load(
            dy_ptr + (n_idx * sgn + oh * sgh + ow * sgw)[:, None] + offs_c[None, :] * sgc,
            mask=mask, other=0.0,
        ).to(tl.float32)
        if ACT != 0:
            s = tl.load(
                s_ptr + (n_idx * ssn + oh * ssh + ow * ssw)[:, None] + offs_c[None, :] * ssc,
                mask=mask, other=0.0,
            ).to(tl.float32)
            g = _act_bwd(g, s, ACT)
        tl.store(dz_ptr + (n_idx * sdn + oh * sdh + ow * sdw)[:, None] + offs_c[None, :] * sdc,
                 g, mask=mask)
        if HAS_BIAS:
            tl.store(db_ptr + pid_m * C + offs_c, tl.sum(tl.where(mask, g, 0.0), axis=0),
                     mask=mask_c)

    @triton.jit
    def _conv2d_dx_kernel(
        dz_ptr,  # dL/dz (N, Cout, Hout, Wout), any strides
        w_ptr,  # weight (Cout, C/groups, KH, KW), any strides
        dx_ptr,  # dL/dx out (N, C, H, W), any strides
        tap_ptr,  # int32 (SH + SW, 2): per row phase (first kh, count), then per column phase (first kw, count)
        NB,  # batch size N
        C_G,  # input channels per group
        H, W,  # input height, width
        CO_G,  # output channels per group
        HO, WO,  # output height, width
        sdn, sdc, sdh, sdw,  # strides of dz
        swo, swc, swh, sww,  # strides of weight
        sxn, sxc, sxh, sxw,  # strides of dx
        SH, SW,  # stride
        PH, PW,  # padding
        DH, DW,  # dilation
        STEP_H, STEP_W,  # distance between taps of one phase: SH / gcd(SH, DH), SW / gcd(SW, DW)
        BLOCK_M: tl.constexpr,  # input pixels per tile
        BLOCK_N: tl.constexpr,  # input channels per tile
        BLOCK_K: tl.constexpr,  # output channels per K step
    ):
        num_n = tl.cdiv(C_G, BLOCK_N)
        pid_n = tl.program_id(0) % num_n
        pid_m = tl.program_id(0) // num_n
        g = tl.program_id(1) // (SH * SW)  # group
        phase = tl.program_id(1) % (SH * SW)  # (ih mod SH, iw mod SW)
        rh = phase // SW
        rw = phase % SW
        hp = (H - rh + SH - 1) // SH  # input rows / cols of this phase
        wp = (W - rw + SW - 1) // SW

        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_m = offs_m < NB * hp * wp
        n_idx = offs_m // tl.maximum(hp * wp, 1)
        i = (offs_m % tl.maximum(hp * wp, 1)) // tl.maximum(wp, 1)
        j = offs_m % tl.maximum(wp, 1)
        dz_row = dz_ptr + n_idx.to(tl.int64) * sdn + g * CO_G * sdc

        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < C_G
        c = g * C_G + offs_n
        offs_k = tl.arange(0, BLOCK_K)

        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        num_cb = tl.cdiv(CO_G, BLOCK_K)
        kh0 = tl.load(tap_ptr + 2 * rh)  # taps of this phase: kh0 + STEP_H * t, t < nkh
        nkh = tl.load(tap_ptr + 2 * rh + 1)
        kw0 = tl.load(tap_ptr + 2 * (SH + rw))
        nkw = tl.load(tap_ptr + 2 * (SH + rw) + 1)
        for it in range(0, nkh * nkw * num_cb):
            t = it // num_cb
            co = (it - t * num_cb) * BLOCK_K + offs_k
            kh = kh0 + (t // nkw) * STEP_H
            kw = kw0 + (t % nkw) * STEP_W
            oh = i + (rh + PH - kh * DH) // SH  # exact division: (kh, kw) belongs to this phase
            ow = j + (rw + PW - kw * DW) // SW
            ok_m = mask_m & (oh >= 0) & (oh < HO) & (ow >= 0) & (ow < WO)
            mask_co = co < CO_G
            a = tl.load(
                dz_row[:, None] + oh[:, None] * sdh + ow[:, None] * sdw + co[None, :] * sdc,
                mask=ok_m[:, None] & mask_co[None, :],
                other=0.0,
            )
            b = tl.load(
                w_ptr + (g * CO_G + co)[:, None] * swo + offs_n[None, :] * swc + kh * swh + kw * sww,
                mask=mask_co[:, None] & mask_n[None, :],
                other=0.0,
            )
            acc = tl.dot(a, b, acc)

        ih = rh + i * SH
        iw = rw + j * SW
        x_off = n_idx.to(tl.int64) * sxn + ih * sxh + iw * sxw
        tl.store(dx_ptr + x_off[:, None] + c[None, :] * sxc, acc,
                 mask=mask_m[:, None] & mask_n[None, :])

    @triton.jit
    def _conv2d_dw_kernel(
        x_ptr,  # input (N, C, H, W), any strides
        dz_ptr,  # dL/dz (N, Cout, Hout, Wout), any strides
        dw_ptr,  # out: (S, Cout, C/groups, KH, KW) partials (fp32) or dw itself when S == 1
        NB,  # batch size N
        C_G,  # input channels per group
        H, W,  # input height, width
        CO_G,  # output channels per group
        HO, WO,  # output height, width
        sxn, sxc, sxh, sxw,  # strides of x
        sdn, sdc, sdh, sdw,  # strides of dz
        sos, soo, soc, soh, sow,  # strides of the output (split, co, c, kh, kw)
        SH, SW,  # stride
        PH, PW,  # padding
        DH, DW,  # dilation
        NSPLIT,  # number of splits of the pixel reduction
        M_PER_SPLIT,  # pixels reduced by one split
        KH: tl.constexpr,  # kernel height
        KW: tl.constexpr,  # kernel width
        BLOCK_M: tl.constexpr,  # pixels per reduction step
        BLOCK_N: tl.constexpr,  # input channels per tile
        BLOCK_CO: tl.constexpr,  # output channels per tile
    ):
        num_co = tl.cdiv(CO_G, BLOCK_CO)
        num_c = tl.cdiv(C_G, BLOCK_N)
        pid = tl.program_id(0)
        pid_co = pid % num_co
        pid_c = (pid // num_co) % num_c
        tap = pid // (num_co * num_c)
        kh = tap // KW
        kw = tap % KW
        g = tl.program_id(1) // NSPLIT  # group
        split = tl.program_id(1) % NSPLIT

        offs_co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
        offs_c = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_co = offs_co < CO_G
        mask_c = offs_c < C_G
        x_chan = x_ptr + (g * C_G + offs_c) * sxc
        dz_chan = dz_ptr + (g * CO_G + offs_co) * sdc

        acc = tl.zeros((BLOCK_CO, BLOCK_N), dtype=tl.float32)
        m_lo = split * M_PER_SPLIT
        m_hi = tl.minimum(m_lo + M_PER_SPLIT, NB * HO * WO)
        for m0 in range(m_lo, m_hi, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < m_hi
            n_idx = offs_m.to(tl.int64) // (HO * WO)
            oh = (offs_m % (HO * WO)) // WO
            ow = offs_m % WO
            ih = oh * SH - PH + kh * DH
            iw = ow * SW - PW + kw * DW
            ok_m = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(
                dz_chan[:, None] + (n_idx * sdn + oh * sdh + ow * sdw)[None, :],
                mask=mask_co[:, None] & mask_m[None, :],
                other=0.0,
            )
            b = tl.load(
                x_chan[None, :] + (n_idx * sxn + ih * sxh + iw * sxw)[:, None],
                mask=ok_m[:, None] & mask_c[None, :],
                other=0.0,
            )
            acc = tl.dot(a, b, acc)

        out = dw_ptr + split * sos + kh * soh + kw * sow
        tl.store(out + (g * CO_G + offs_co)[:, None] * soo + offs_c[None, :] * soc, acc,
                 mask=mask_co[:, None] & mask_c[None, :])

    def _configs(spec):
        return [triton.Config(dict(zip(("BLOCK_M", "BLOCK_N", "BLOCK_K"), b)), num_warps=w, num_stages=s)
                for b, w, s in spec]

    # (BLOCK_M, BLOCK_N, BLOCK_K), num_warps, num_stages: large tiles for wide layers, small for
    # narrow ones (few channels per group). Keys leave out the batch size, so it never re-tunes.
    _GEMM_CONFIGS = [
        ((128, 128, 64), 8, 3), ((128, 128, 32), 8, 4), ((128, 64, 64), 4, 4), ((64, 128, 64), 4, 4),
        ((128, 256, 64), 8, 3), ((64, 64, 64), 4, 4), ((64, 64, 32), 4, 5), ((128, 32, 32), 4, 4),
        ((32, 32, 16), 2, 4),
    ]
    _DW_CONFIGS = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_CO": bco}, num_warps=w, num_stages=s)
        for (bco, bn, bm), w, s in [
            ((128, 128, 64), 8, 3), ((128, 64, 64), 4, 4), ((64, 128, 64), 4, 4),
            ((64, 64, 64), 4, 4), ((64, 64, 128), 4, 3), ((32, 32, 64), 4, 4), ((32, 32, 32), 2, 4),
        ]
    ]
    _KEY = ["C_G", "CO_G", "HO", "WO", "KH", "KW", "SH", "SW"]
    _conv2d_fwd_tuned = triton.autotune(_configs(_GEMM_CONFIGS), key=_KEY)(_conv2d_fwd_kernel)
    _DX_KEY = ["C_G", "CO_G", "H", "W", "SH", "SW", "DH", "DW"]
    _conv2d_dx_tuned = triton.autotune(_configs(_GEMM_CONFIGS), key=_DX_KEY)(_conv2d_dx_kernel)
    _conv2d_dw_tuned = triton.autotune(_DW_CONFIGS, key=_KEY + ["NSPLIT"])(_conv2d_dw_kernel)

# Tile sizes under the interpreter (every config would run while autotuning on the CPU).
_INTERP_META = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16}
_INTERP_DW_META = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_CO": 16}
_DZ_BLOCK = (64, 64)  # (pixels, channels) of the elementwise dz kernel on a GPU


# ----------------------------------------------------------------------------------------------
# 2. Launchers
# ----------------------------------------------------------------------------------------------
def _pair(name: str, v, minimum: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(isinstance(e, int) and not isinstance(e, bool) for e in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return pair


def _pairs(stride, padding, dilation):
    return _pair("stride", stride, 1), _pair("padding", padding, 0), _pair("dilation", dilation, 1)


def _check_args(x, weight, bias, stride, padding, dilation, groups, activation):
    """Validate shapes and options; returns (stride, padding, dilation, (Hout, Wout)) as pairs."""
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 4-D tensor, got {shape}")
    if activation not in _ACTS:
        raise ValueError(f"activation must be one of {sorted(k for k in _ACTS if k)} or None, got {activation!r}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    sh_sw, ph_pw, dh_dw = _pairs(stride, padding, dilation)
    (_, c, h, w), (co, cg, kh, kw) = x.shape, weight.shape
    if c % groups or co % groups:
        raise ValueError(f"groups={groups} must divide x channels ({c}) and weight out channels ({co})")
    if cg * groups != c:
        raise ValueError(f"channel mismatch: x {tuple(x.shape)} has {c} channels, weight "
                         f"{tuple(weight.shape)} expects {cg} x groups={groups}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (co,)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else repr(bias)
        raise ValueError(f"bias must have shape ({co},), got {got}")
    out_hw = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                   for size, p, d, k, s in zip((h, w), ph_pw, dh_dw, (kh, kw), sh_sw))
    if min(out_hw) < 1 or min(kh, kw) < 1:
        raise ValueError(f"output size {out_hw} < 1 for x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
                         f"stride {sh_sw}, padding {ph_pw}, dilation {dh_dw}")
    return sh_sw, ph_pw, dh_dw, out_hw


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Layout of outputs/gradients for x: channels-last when x is, else contiguous NCHW."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """Channels-last copy (or t itself): the gathers then load contiguous channel vectors."""
    return t.contiguous(memory_format=torch.channels_last)


def _launch(tuned, plain, meta, grid, *args, **kw):
    """Autotuned launch on a GPU, one small fixed config under the interpreter."""
    if interpreting():
        plain[grid(meta)](*args, **kw, **meta)
    else:
        tuned[grid](*args, **kw)


def conv2d_fwd(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None,
               out=None, save_preact=False):
    """Launch the forward kernel; returns (y, z) with z the pre-activation when save_preact else None."""
    check_float("x", x, ndim=4)
    check_float("weight", weight, ndim=4)
    check_same("x", x, "weight", weight)
    if bias is not None:
        check_float("bias", bias, ndim=1)
        check_same("x", x, "bias", bias)
    conf = _check_args(x, weight, bias, stride, padding, dilation, groups, activation)
    (sh, sw), (ph, pw), (dh, dw), (ho, wo) = conf
    n, c, h, w_ = x.shape
    co, cg, kh, kw = weight.shape
    fmt = _memory_format(x)
    if out is None:
        out = torch.empty((n, co, ho, wo), device=x.device, dtype=x.dtype, memory_format=fmt)
    elif tuple(out.shape) != (n, co, ho, wo) or out.dtype != x.dtype:
        raise ValueError(f"out must be {x.dtype} of shape {(n, co, ho, wo)}, got {out.dtype} {tuple(out.shape)}")
    z = torch.empty_like(out) if save_preact else None
    if out.numel() == 0:
        return out, z
    xk = _nhwc(x)
    wk = weight.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)  # memory (KH, KW, C/g, Cout)
    zz = z if z is not None else out
    grid = lambda meta: (triton.cdiv(n * ho * wo, meta["BLOCK_M"]) * triton.cdiv(co // groups, meta["BLOCK_N"]),
                         groups)
    _launch(_conv2d_fwd_tuned, _conv2d_fwd_kernel, _INTERP_META, grid,
            xk, wk, bias if bias is not None else out, out, zz,
            n, cg, h, w_, co // groups, ho, wo,
            *xk.stride(), *wk.stride(), *out.stride(), *zz.stride(),
            sh, sw, ph, pw, dh, dw,
            KH=kh, KW=kw, HAS_BIAS=bias is not None, ACT=_ACTS[activation][0], SAVE_Z=z is not None)
    return out, z


def conv2d_bwd_dz(dy, saved, activation, need_db):
    """dz = dy * act'(saved) in NHWC and, when need_db, the bias gradient (fp32)."""
    n, co, ho, wo = dy.shape
    dz = torch.empty((n, co, ho, wo), device=dy.device, dtype=dy.dtype, memory_format=torch.channels_last)
    bm, bc = (16, 16) if interpreting() else _DZ_BLOCK
    num_m = triton.cdiv(n * ho * wo, bm)
    db = torch.empty((num_m, co), device=dy.device, dtype=torch.float32) if need_db else None
    s = saved if saved is not None else dy
    _conv2d_dz_kernel[(num_m, triton.cdiv(co, bc))](
        dy, s, dz, db if db is not None else dz,
        n * ho * wo, co, ho, wo, *dy.stride(), *s.stride(), *dz.stride(),
        ACT=_ACTS[activation][0], HAS_BIAS=need_db, BLOCK_M=bm, BLOCK_C=bc)
    return dz, (db.sum(0) if db is not None else None)


@functools.lru_cache(maxsize=256)
def _phase_taps(kh, kw, sh, sw, ph, pw, dh, dw, device):
    """Taps of each stride phase: input row a (mod sh) is reached by the kernel rows k with
    a + ph - k*dh divisible by sh, an arithmetic progression of step sh / gcd(sh, dh).
    Returns the int32 table [(first k, count) per row phase] + [(first k, count) per column phase]."""
    rows = []
    for size, s, p, d in ((kh, sh, ph, dh), (kw, sw, pw, dw)):
        for a in range(s):
            ks = [k for k in range(size) if (a + p - k * d) % s == 0]
            rows.append((ks[0] if ks else 0, len(ks)))
    return torch.tensor(rows, dtype=torch.int32).to(device)


def conv2d_bwd_dx(dz, weight, x_shape, stride, padding, dilation, groups, out=None):
    """dL/dx from dL/dz (pre-activation gradient) as a phase-split implicit GEMM."""
    n, c, h, w_ = x_shape
    co, cg, kh, kw = weight.shape
    _, _, ho, wo = dz.shape
    (sh, sw), (ph, pw), (dh, dw) = _pairs(stride, padding, dilation)
    if out is None:
        out = torch.empty(x_shape, device=dz.device, dtype=dz.dtype)
    dzk = _nhwc(dz)
    wk = weight.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)  # memory (KH, KW, Cout, C/g)
    taps = _phase_taps(kh, kw, sh, sw, ph, pw, dh, dw, dz.device)
    max_pix = n * triton.cdiv(h, sh) * triton.cdiv(w_, sw)
    grid = lambda meta: (triton.cdiv(max_pix, meta["BLOCK_M"]) * triton.cdiv(cg, meta["BLOCK_N"]),
                         groups * sh * sw)
    _launch(_conv2d_dx_tuned, _conv2d_dx_kernel, _INTERP_META, grid,
            dzk, wk, out, taps, n, cg, h, w_, co // groups, ho, wo,
            *dzk.stride(), *wk.stride(), *out.stride(),
            sh, sw, ph, pw, dh, dw, sh // math.gcd(sh, dh), sw // math.gcd(sw, dw))
    return out


def conv2d_bwd_dw(dz, x, weight_shape, stride, padding, dilation, groups, out=None, splits=None):
    """dL/dweight: per-tap implicit GEMM reducing over N*Hout*Wout, split into `splits` fp32 partials."""
    n, c, h, w_ = x.shape
    co, cg, kh, kw = weight_shape
    _, _, ho, wo = dz.shape
    (sh, sw), (ph, pw), (dh, dw) = _pairs(stride, padding, dilation)
    m = n * ho * wo
    granule = _INTERP_DW_META["BLOCK_M"] if interpreting() else 256
    if splits is None:  # enough programs to fill the GPU when the weight is small and N*Hout*Wout large
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 4
        tiles = triton.cdiv(co // groups, 64) * triton.cdiv(cg, 64) * kh * kw * groups
        splits = max(1, min(4 * sms // tiles, triton.cdiv(m, 4 * granule)))
    per_split = triton.cdiv(triton.cdiv(m, splits), granule) * granule
    splits = triton.cdiv(m, per_split)
    if out is None:
        out = torch.empty(weight_shape, device=x.device, dtype=x.dtype)
    if splits == 1:  # straight into dw (cast on store); else fp32 partials summed below
        dst = out.unsqueeze(0)
    else:
        dst = torch.empty((splits, *weight_shape), device=x.device, dtype=torch.float32)
    xk, dzk = _nhwc(x), _nhwc(dz)
    grid = lambda meta: (triton.cdiv(co // groups, meta["BLOCK_CO"]) * triton.cdiv(cg, meta["BLOCK_N"]) * kh * kw,
                         groups * splits)
    _launch(_conv2d_dw_tuned, _conv2d_dw_kernel, _INTERP_DW_META, grid,
            xk, dzk, dst, n, cg, h, w_, co // groups, ho, wo,
            *xk.stride(), *dzk.stride(), *dst.stride(), sh, sw, ph, pw, dh, dw, splits, per_split,
            KH=kh, KW=kw)
    if splits > 1:
        out.copy_(dst.sum(0))
    return out


# ----------------------------------------------------------------------------------------------
# 3. Autograd
# ----------------------------------------------------------------------------------------------
class Conv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, activation):
        saves = _ACTS[activation][1]
        y, z = conv2d_fwd(x, weight, bias, stride, padding, dilation, groups, activation,
                          save_preact=saves == "preact")
        saved = {"output": y, "preact": z, None: None}[saves]
        ctx.save_for_backward(x, weight, saved)
        ctx.conf = (stride, padding, dilation, groups, activation, bias is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, saved = ctx.saved_tensors
        stride, padding, dilation, groups, activation, has_bias = ctx.conf
        need_db = has_bias and ctx.needs_input_grad[2]
        if _ACTS[activation][0] == 0 and not need_db:
            dz = dy
        else:
            dz, db = conv2d_bwd_dz(dy, saved, activation, need_db)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = conv2d_bwd_dx(dz, weight, x.shape, stride, padding, dilation, groups,
                               out=torch.empty_like(x, memory_format=_memory_format(x)))
        if ctx.needs_input_grad[1]:
            dw = conv2d_bwd_dw(dz, x, weight.shape, stride, padding, dilation, groups)
        return dx, dw, (db.to(dy.dtype) if need_db else None), None, None, None, None, None


# ----------------------------------------------------------------------------------------------
# 4. Reference
# ----------------------------------------------------------------------------------------------
def conv2d_reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """F.conv2d followed by the activation (exact erf gelu), in plain PyTorch."""
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if activation in (None, "none"):
        return y
    return {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[activation](y)


# ----------------------------------------------------------------------------------------------
# 5. Public function
# ----------------------------------------------------------------------------------------------
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """act(F.conv2d(x, weight, bias, stride, padding, dilation, groups)), NCHW in and out."""
    _check_args(x, weight, bias, stride, padding, dilation, groups, activation)
    if use_triton(x, weight, bias):
        return Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups, activation)
    return conv2d_reference(x, weight, bias, stride, padding, dilation, groups, activation)
