"""Spatial ops beside convolution: transposed convolution, resizing, adaptive pooling, channel
dropout and zero padding.

Layouts as ``ops.nn``: [B, C, L] (1-D) or [B, C, H, W] (2-D), unbatched inputs without B also
taken where PyTorch takes them. Sizes may be symbolic; ``upsample`` by a float factor gives
``floor(n * scale)``, as F.interpolate does.
"""
from __future__ import annotations

import sympy

from ..ir import dims as D
from ..ir.types import TensorType
from .core import is_dim, same_dtype
from .nn import expect_shape, int_tuple, ntuple, opt_input, spatial_rank
from .registry import EmitCtx, InferCtx, op


# -------------------------------------------------------------------------- transposed convolution
def _convt_emit(e: EmitCtx) -> str:
    a, nd = e.attrs, int(e.node.op[-2])
    t = {k: e.lit(ntuple(a.get(k, dv), nd)) for k, dv in (("stride", 1), ("padding", 0), ("output_padding", 0),
                                                         ("dilation", 1))}
    return (f"F.{e.node.op}({e.ins[0]}, {e.ins[1]}, {opt_input(e, 2)}, stride={t['stride']}, "
            f"padding={t['padding']}, output_padding={t['output_padding']}, groups={e.lit(a.get('groups', 1))}, "
            f"dilation={t['dilation']})")


def _convt_infer(c: InferCtx) -> TensorType:
    """x [B, Cin, *spatial] (or unbatched) with w [Cin, Cout/groups, *kernel] (+ b [Cout]); each axis
    n -> (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1."""
    nd = spatial_rank(c)
    x = c.expect_rank(0, nd + 2, nd + 1)
    w = c.expect_rank(1, nd + 2, what="weight")
    c.expect_float(0)
    dtype = same_dtype(c)
    stride, padding, out_pad, dilation = (int_tuple(c, k, nd, dv) for k, dv in (
        ("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1)))
    groups = c.attrs.get("groups", 1)
    if not D.equal(x.shape[-nd - 1], w.shape[0]):
        raise c.error(f"{c.op} expects {w.shape[0]} input channels (dim {x.rank - nd - 1}), got "
                      f"{D.dim_str(x.shape[-nd - 1])} ({c.describe(0)})")
    cout = w.shape[1] * groups
    if len(c.types) > 2:
        expect_shape(c, 2, (cout,), "the bias")
    spatial = []
    for i in range(nd):
        s, p, op_, d = stride[i], padding[i], out_pad[i], dilation[i]
        if s <= 0 or d <= 0 or p < 0 or op_ < 0:
            raise c.error(f"{c.op}: stride and dilation must be positive, padding and output_padding non-negative")
        if op_ >= max(s, d):
            raise c.error(f"{c.op}: output_padding {op_} must be smaller than the stride or the dilation "
                          f"(stride {s}, dilation {d})")
        n = x.shape[x.rank - nd + i]
        size = D.norm((n - 1) * s - 2 * p + d * (w.shape[2 + i] - 1) + op_ + 1)
        if isinstance(size, int) and size < 1:
            raise c.error(f"{c.op}: dim {x.rank - nd + i} of {c.describe(0)} gives an output of size {size}")
        spatial.append(size)
    return TensorType(list(x.shape[:-nd - 1]) + [cout] + spatial, dtype)


for _n in ("conv_transpose1d", "conv_transpose2d"):
    op(_n, emit=_convt_emit)(_convt_infer)


# ---------------------------------------------------------------------------------------- upsample
_MODES = {1: ("nearest", "linear"), 2: ("nearest", "bilinear")}


def _upsample_emit(e: EmitCtx) -> str:
    a = e.attrs
    size = "None" if a.get("size") is None else e.dims(a["size"])
    scale = "None" if a.get("scale") is None else e.lit(tuple(float(s) for s in a["scale"]))
    corners = None if a["mode"] == "nearest" else bool(a.get("align_corners", False))
    return (f"F.interpolate({e.ins[0]}, size={size}, scale_factor={scale}, mode={e.lit(a['mode'])}, "
            f"align_corners={e.lit(corners)})")


@op("upsample", emit=_upsample_emit)
def _upsample(c: InferCtx) -> TensorType:
    """Resize the last 1 or 2 axes of [B, C, L] / [B, C, H, W] to attr ``size`` (dims) or by attr ``scale``
    (numbers; floor(n * scale)); attr ``mode`` 'nearest', 'linear' (1-D) or 'bilinear' (2-D);
    attr ``align_corners`` for the interpolating modes."""
    x = c.expect_rank(0, 3, 4)
    c.expect_float(0)
    nd = x.rank - 2
    mode = c.attrs.get("mode")
    if mode not in _MODES[nd]:
        raise c.error(f"upsample: mode {mode!r} does not apply to a rank-{x.rank} input {c.describe(0)}",
                      f"for {nd}-D data use one of: {', '.join(_MODES[nd])}")
    size, scale = c.attrs.get("size"), c.attrs.get("scale")
    if (size is None) == (scale is None):
        raise c.error("upsample needs exactly one of size and scale")
    if size is not None:
        if len(size) != nd or not all(is_dim(s) and not isinstance(s, bool) for s in size) or \
                any(isinstance(s, int) and s <= 0 for s in size):
            raise c.error(f"upsample: size must be {nd} positive sizes, got {list(size)}")
        return x.with_shape(list(x.shape[:2]) + list(size))
    if len(scale) != nd or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scale):
        raise c.error(f"upsample: scale must be {nd} positive numbers, got {list(scale)}")
    out = []
    for n, s in zip(x.shape[2:], scale):
        m = D.norm(sympy.floor(sympy.sympify(n) * sympy.nsimplify(s)))
        if isinstance(m, int) and m < 1:
            raise c.error(f"upsample: scale {s} makes dim of size {D.dim_str(n)} empty")
        out.append(m)
    return x.with_shape(list(x.shape[:2]) + out)


# ---------------------------------------------------------------------------------- adaptive pooling
def _adaptive_emit(e: EmitCtx) -> str:
    nd = int(e.node.op[-2])
    return f"F.adaptive_avg_pool{nd}d({e.ins[0]}, {e.lit(ntuple(e.attrs['out'], nd))})"


def _adaptive_infer(c: InferCtx) -> TensorType:
    """Average pooling of the last 1 or 2 axes into attr ``out`` cells each (any input size): [B, C, *out]."""
    nd = spatial_rank(c)
    x = c.expect_rank(0, nd + 2, nd + 1)
    c.expect_float(0)
    out = int_tuple(c, "out", nd, None)
    if any(o <= 0 for o in out):
        raise c.error(f"{c.op}: output sizes must be positive, got {list(out)}")
    return x.with_shape(list(x.shape[:-nd]) + list(out))


for _n in ("adaptive_avgpool1d", "adaptive_avgpool2d"):
    op(_n, emit=_adaptive_emit)(_adaptive_infer)


# --------------------------------------------------------------------------------------- dropout2d
@op("dropout2d", emit=lambda e: f"F.dropout2d({e.ins[0]}, {e.lit(float(e.attrs['p']))}, self.training)")
def _dropout2d(c: InferCtx) -> TensorType:
    """Zero whole channels of [B, C, H, W] with probability attr ``p`` while training (scaling the rest
    by 1/(1-p)); identity in eval mode."""
    p = c.attrs.get("p")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise c.error(f"dropout2d: p must be a probability in [0, 1], got {p!r}")
    c.expect_rank(0, 4)
    return c.expect_float(0)


# -------------------------------------------------------------------------------------------- pad
def _pad_emit(e: EmitCtx) -> str:
    return f"F.pad({e.ins[0]}, {e.lit(tuple(e.attrs['pads']))}, value={e.lit(float(e.attrs.get('value', 0.0)))})"


@op("pad", emit=_pad_emit)
def _pad(c: InferCtx) -> TensorType:
    """Constant padding (attr ``value``, default 0): attr ``pads`` lists (before, after) per axis, the
    last axis first, as F.pad: (1, 2) pads the last axis by 1 before and 2 after."""
    t = c.types[0]
    pads = c.attrs.get("pads")
    if not isinstance(pads, (list, tuple)) or len(pads) % 2 or not pads or len(pads) > 2 * t.rank or \
            not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pads):
        raise c.error(f"pad: pads must be pairs of non-negative ints, one pair per axis from the last, at most "
                      f"{t.rank} pairs for {c.describe(0)}; got {pads!r}")
    shape = list(t.shape)
    for i in range(len(pads) // 2):
        ax = t.rank - 1 - i
        extra = pads[2 * i] + pads[2 * i + 1]
        shape[ax] = shape[ax] + extra if isinstance(shape[ax], int) else D.norm(shape[ax] + extra)
    return t.with_shape(shape)
