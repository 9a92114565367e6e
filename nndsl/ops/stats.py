"""Spread reductions: variance and standard deviation over some axes.

Attrs as the other reductions (``ops.pointwise``): ``dims`` (a tuple of axes, or None for all of
them), ``keepdim``; plus ``correction``, the divisor being ``n - correction`` (1: the unbiased
estimate, PyTorch's default; 0: the population's).
"""
from __future__ import annotations

from ..ir.types import TensorType
from .pointwise import reduce_axes
from .registry import EmitCtx, InferCtx, op


def _spread_emit(e: EmitCtx) -> str:
    t = e.node.inputs[0].type
    axes = reduce_axes(InferCtx(e.node.op, [t], e.attrs))
    dims = "None" if len(axes) == t.rank else e.dims(axes)
    return (f"torch.{e.node.op}({e.ins[0]}, dim={dims}, correction={e.lit(int(e.attrs.get('correction', 1)))}, "
            f"keepdim={e.lit(bool(e.attrs.get('keepdim', False)))})")


def _spread_infer(c: InferCtx) -> TensorType:
    """Variance (``var``) or standard deviation (``std``) over attr ``dims`` with divisor n - attr
    ``correction``; reduced axes are dropped, or kept as size 1 with attr ``keepdim``. Floats only."""
    t = c.expect_float(0)
    corr = c.attrs.get("correction", 1)
    if isinstance(corr, bool) or not isinstance(corr, int) or corr < 0:
        raise c.error(f"{c.op}: correction must be a non-negative int, got {corr!r}")
    axes = reduce_axes(c)
    if c.attrs.get("keepdim", False):
        return t.with_shape([1 if i in axes else n for i, n in enumerate(t.shape)])
    return t.with_shape([n for i, n in enumerate(t.shape) if i not in axes])


for _name in ("var", "std"):
    op(_name, emit=_spread_emit)(_spread_infer)
