"""Comparisons, selection and clamping, and one-hot encoding.

* ``lt le gt ge eq ne`` compare two tensors (``[a, b]``, same dtype, broadcasting) or a tensor
  with attr ``value`` (``[a]``) and give a bool tensor.
* ``where`` picks from ``a`` where ``cond`` (a bool tensor) holds, else from ``b``; either branch
  may be a number instead of a tensor: attrs ``a``/``b`` hold the number, or None when the branch
  is an input (inputs: ``cond``, then the tensor branches in order).
* ``clamp`` bounds x by the numbers ``min`` and/or ``max`` (attrs).
* ``one_hot`` turns an integer tensor [...] into [..., classes] of attr ``dtype`` (i64 as PyTorch).
"""
from __future__ import annotations

import math
from typing import Any

from ..ir.types import DTYPES, INT_DTYPES, TensorType
from .core import same_dtype
from .registry import EmitCtx, InferCtx, op

_CMP = ("lt", "le", "gt", "ge", "eq", "ne")


def is_number(v: Any) -> bool:
    """An int or a finite float, not a bool."""
    return not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)))


def _cmp_emit(e: EmitCtx) -> str:
    other = e.ins[1] if len(e.ins) > 1 else e.lit(e.attrs["value"])
    return f"torch.{e.node.op}({e.ins[0]}, {other})"


def _cmp_infer(c: InferCtx) -> TensorType:
    """Elementwise comparison of two tensors (same dtype, broadcasting) or of a tensor with the number
    attr ``value``; a bool tensor."""
    if len(c.types) == 2:
        same_dtype(c)
        return TensorType(c.broadcast(*c.types), "bool")
    if not is_number(c.attrs.get("value")):
        raise c.type_error(f"{c.op}: the other operand must be a tensor or a number, got {c.attrs.get('value')!r}")
    return c.types[0].with_dtype("bool")


for _name in _CMP:
    op(_name, emit=_cmp_emit)(_cmp_infer)


# ----------------------------------------------------------------------------------------- where
def _branches(e_or_c, ins: list) -> list:
    """The two branches as (input index or None, number or None)."""
    out, i = [], 1
    for key in ("a", "b"):
        v = e_or_c.attrs.get(key)
        if v is None:
            out.append((i, None))
            i += 1
        else:
            out.append((None, v))
    return out


def _where_emit(e: EmitCtx) -> str:
    parts = [e.ins[i] if i is not None else e.lit(v) for i, v in _branches(e, e.ins)]
    t = e.out_types[0]
    if all(i is None for i, _ in _branches(e, e.ins)):  # two numbers: PyTorch needs a tensor branch
        parts[0] = f"torch.tensor({parts[0]}, dtype={DTYPES[t.dtype]}, device={e.ins[0]}.device)"
    return f"torch.where({e.ins[0]}, {', '.join(parts)})"


@op("where", emit=_where_emit)
def _where(c: InferCtx) -> TensorType:
    """a where cond else b; cond bool; a, b tensors of one dtype or numbers (attrs ``a``/``b``), all broadcast.
    A float number with an int tensor (or two numbers, one a float) gives f32; two ints i64."""
    cond = c.types[0]
    if cond.dtype != "bool":
        raise c.type_error(f"where expects a bool condition, got {c.describe(0)}",
                           "compare to make one: gt(x, 0), or cast(x, \"bool\")")
    branches = _branches(c, c.types)
    tensors = [i for i, _ in branches if i is not None]
    numbers = [v for _, v in branches if v is not None]
    if len(tensors) + 1 != len(c.types):
        raise c.error(f"where: {len(c.types)} inputs for {len(tensors)} tensor branches")
    for v in numbers:
        if not is_number(v):
            raise c.type_error(f"where: a branch must be a tensor or a number, got {v!r}")
    if tensors:
        dtype = same_dtype(c, *tensors)
        if not TensorType((), dtype).is_float and any(isinstance(v, float) for v in numbers):
            dtype = "f32"
    else:
        dtype = "f32" if any(isinstance(v, float) for v in numbers) else "i64"
    shape = cond
    for i in tensors:
        shape = TensorType(c.broadcast(shape, c.types[i]), dtype)
    return TensorType(shape.shape, dtype)


# ----------------------------------------------------------------------------------------- clamp
def _clamp_emit(e: EmitCtx) -> str:
    lo, hi = e.attrs.get("min"), e.attrs.get("max")
    return f"torch.clamp({e.ins[0]}, min={e.lit(lo)}, max={e.lit(hi)})"


@op("clamp", emit=_clamp_emit)
def _clamp(c: InferCtx) -> TensorType:
    """x bounded below by attr ``min`` and above by attr ``max`` (numbers; None: unbounded on that side).
    An int tensor with a float bound gives f32."""
    t = c.types[0]
    lo, hi = c.attrs.get("min"), c.attrs.get("max")
    if lo is None and hi is None:
        raise c.error("clamp needs min, max or both")
    for key, v in (("min", lo), ("max", hi)):
        if v is not None and not is_number(v):
            raise c.type_error(f"clamp: {key} must be a number, got {v!r}")
    if t.dtype == "bool":
        raise c.type_error(f"clamp is not defined on bool tensors ({c.describe(0)})")
    if lo is not None and hi is not None and lo > hi:
        raise c.error(f"clamp: min {lo} is greater than max {hi}")
    if not t.is_float and any(isinstance(v, float) for v in (lo, hi)):
        return t.with_dtype("f32")
    return t


# --------------------------------------------------------------------------------------- one_hot
def _one_hot_emit(e: EmitCtx) -> str:
    x = e.ins[0] if e.node.inputs[0].type.dtype == "i64" else f"{e.ins[0]}.long()"
    code = f"F.one_hot({x}, {e.lit(int(e.attrs['classes']))})"
    dt = e.attrs.get("dtype", "i64")
    return code if dt == "i64" else f"{code}.to({DTYPES[dt]})"


@op("one_hot", emit=_one_hot_emit)
def _one_hot(c: InferCtx) -> TensorType:
    """Integer x [...] -> [..., classes] with a 1 at each index (attr ``classes``), of attr ``dtype``
    (default i64, as F.one_hot). An index outside [0, classes) fails when the model runs."""
    t = c.types[0]
    if t.dtype not in INT_DTYPES:
        raise c.type_error(f"one_hot expects an integer tensor (i64 or i32), got {c.describe(0)}",
                           "cast(x, \"i64\") converts it")
    classes = c.attrs.get("classes")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes <= 0:
        raise c.error(f"one_hot: classes must be a positive int, got {classes!r}")
    dt = c.attrs.get("dtype", "i64")
    if dt not in DTYPES:
        raise c.type_error(f"one_hot: unknown dtype {dt!r}", "one of: " + ", ".join(DTYPES))
    return TensorType(list(t.shape) + [classes], dt)
