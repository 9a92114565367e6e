"""Spatial builtins: transposed convolution (a layer with parameters), upsampling, adaptive average
pooling, channel dropout and padding. Shapes are checked by the ops (``ops.spatial``)."""
from __future__ import annotations

import math

import sympy

from ..errors import NndslTypeError
from ..ir.builder import Builder
from .nn import KAIMING, bias_bound, conv_args, describe, ntuple_arg
from .registry import builtin


def _conv_transpose(name: str):
    nd = int(name[-2])

    def fn(b: Builder, x, out, kernel, stride, padding, output_padding, dilation, groups, bias):
        cin, k = conv_args(b, name, x, out, kernel, groups)
        # nn.ConvTranspose*d: weight [in, out/groups, *kernel]; its fan_in is dim 1 times the kernel
        fan_in = out // groups * math.prod(k)
        ins = [x, b.param("weight", (cin, out // groups) + k, init="kaiming_uniform", init_args=KAIMING)]
        if bias:
            ins.append(b.param("bias", (out,), init="uniform", init_args={"bound": bias_bound(fan_in)}))
        attrs = {key: ntuple_arg(b, name, key, v, nd) for key, v in (
            ("stride", stride), ("padding", padding), ("output_padding", output_padding), ("dilation", dilation))}
        return b.op(name, ins, dict(attrs, groups=groups))

    fn.__doc__ = (f"{nd}-D transposed convolution (nn.ConvTranspose{nd}d): [B, C, ...] -> [B, out, ...], each "
                  "axis (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1.")
    builtin(name, "x: tensor, out: int, kernel: ints, stride: ints = 1, padding: ints = 0, output_padding: ints = 0, "
                  "dilation: ints = 1, groups: int = 1, bias: bool = true", stateful=True)(fn)


_conv_transpose("conv_transpose1d")
_conv_transpose("conv_transpose2d")


def _per_axis(b: Builder, key: str, v, nd: int, number_ok: bool) -> tuple:
    """A size/scale argument: one value for every axis, or a list of nd."""
    vals = list(v) if isinstance(v, (list, tuple)) else [v] * nd
    if len(vals) != nd:
        raise b.error(f"upsample: {key} needs {nd} values for this input, got {list(vals)}", cls=NndslTypeError)
    out = []
    for x in vals:
        if isinstance(x, sympy.Expr) and x.is_number:
            x = int(x) if x.is_Integer else float(x)
        ok = (isinstance(x, (int, float)) if number_ok else isinstance(x, (int, sympy.Expr))) and \
            not isinstance(x, bool)
        if not ok:
            want = "numbers" if number_ok else "sizes (ints or dims)"
            raise b.error(f"upsample: {key} must be {want}, got {v!r}", cls=NndslTypeError)
        out.append(x)
    return tuple(out)


@builtin("upsample", "x: tensor, scale_factor: any = none, size: any = none, mode: str = 'nearest', "
                     "align_corners: bool = false")
def upsample(b: Builder, x, scale_factor, size, mode, align_corners):
    """Resize [B, C, L] or [B, C, H, W] by scale_factor or to size (F.interpolate); mode 'nearest',
    'linear' (1-D) or 'bilinear' (2-D)."""
    nd = x.type.rank - 2
    if nd not in (1, 2):
        raise b.error(f"upsample expects [B, C, L] or [B, C, H, W], got {describe(x)}")
    if (scale_factor is None) == (size is None):
        raise b.error("upsample needs exactly one of scale_factor= and size=", cls=NndslTypeError)
    attrs = {"mode": mode, "align_corners": align_corners, "size": None, "scale": None}
    if size is not None:
        attrs["size"] = _per_axis(b, "size", size, nd, number_ok=False)
    else:
        attrs["scale"] = tuple(float(s) for s in _per_axis(b, "scale_factor", scale_factor, nd, number_ok=True))
    return b.op("upsample", [x], attrs)


def _adaptive(name: str):
    nd = int(name[-2])

    def fn(b: Builder, x, out):
        return b.op(name, [x], {"out": ntuple_arg(b, name, "out", out, nd)})

    fn.__doc__ = f"Average pooling of the last {nd} axes into out cells each, whatever their size (nn.AdaptiveAvgPool{nd}d)."
    builtin(name, "x: tensor, out: ints")(fn)


_adaptive("adaptive_avgpool1d")
_adaptive("adaptive_avgpool2d")


@builtin("dropout2d", "x: tensor, p: float = 0.5")
def dropout2d(b: Builder, x, p):
    """Zero whole channels of [B, C, H, W] with probability p while training (nn.Dropout2d); identity otherwise."""
    if not 0.0 <= p <= 1.0:
        raise b.error(f"dropout2d: p must be in [0, 1], got {p}", cls=NndslTypeError)
    if p == 0.0:
        return x
    return b.op("dropout2d", [x], {"p": p})


@builtin("pad", "x: tensor, pads: ints, value: float = 0.0")
def pad(b: Builder, x, pads, value):
    """Constant padding as F.pad: pads = (before, after) for the last axis, then the one before it..."""
    return b.op("pad", [x], {"pads": (pads,) if isinstance(pads, int) else tuple(pads), "value": value})
