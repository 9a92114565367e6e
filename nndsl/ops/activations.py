"""More elementwise functions: parametrized activations and the unary math PyTorch users reach for.

``leaky_relu`` (attr ``slope``), ``elu`` (``alpha``), ``softplus`` (``beta``, ``threshold``) and
``hardswish`` need a floating-point input and keep its type; ``rsqrt``, ``sin`` and ``cos`` turn an
int or bool input into f32, as PyTorch computes them.
"""
from __future__ import annotations

import math

from ..ir.types import TensorType
from .registry import EmitCtx, InferCtx, op


def _number(c: InferCtx, key: str, default: float, positive: bool = False) -> float:
    """A float attr: a finite number (positive when asked)."""
    v = c.attrs.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        want = "a positive number" if positive else "a finite number"
        raise c.error(f"{c.op}: {key} must be {want}, got {v!r}")
    return float(v)


def _emit(fn: str, *attrs: tuple[str, float]):
    """Lower to ``fn(x, attr...)`` with each attr's value (or its default) as a literal."""
    def emit(e: EmitCtx) -> str:
        extra = "".join(f", {e.lit(float(e.attrs.get(k, d)))}" for k, d in attrs)
        return f"{fn}({e.ins[0]}{extra})"

    return emit


@op("leaky_relu", emit=_emit("F.leaky_relu", ("slope", 0.01)))
def _leaky_relu(c: InferCtx) -> TensorType:
    """x where x > 0, else slope * x (attr ``slope``, default 0.01)."""
    _number(c, "slope", 0.01)
    return c.expect_float(0)


@op("elu", emit=_emit("F.elu", ("alpha", 1.0)))
def _elu(c: InferCtx) -> TensorType:
    """x where x > 0, else alpha * (exp(x) - 1) (attr ``alpha``, default 1)."""
    _number(c, "alpha", 1.0)
    return c.expect_float(0)


@op("softplus", emit=_emit("F.softplus", ("beta", 1.0), ("threshold", 20.0)))
def _softplus(c: InferCtx) -> TensorType:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (attrs ``beta``, ``threshold``)."""
    _number(c, "beta", 1.0, positive=True)
    _number(c, "threshold", 20.0)
    return c.expect_float(0)


@op("hardswish", emit=lambda e: f"F.hardswish({e.ins[0]})")
def _hardswish(c: InferCtx) -> TensorType:
    """x * relu6(x + 3) / 6."""
    return c.expect_float(0)


def _promoting_infer(c: InferCtx) -> TensorType:
    """Elementwise; an int or bool input gives f32 (PyTorch's promotion), a float keeps its type."""
    t = c.types[0]
    return t if t.is_float else t.with_dtype("f32")


for _name in ("rsqrt", "sin", "cos"):
    op(_name, emit=lambda e, f=f"torch.{_name}": f"{f}({e.ins[0]})")(_promoting_infer)
