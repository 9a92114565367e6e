"""Stateless builtins beyond the basics: parametrized activations, unary math, comparisons,
selection, clamping, powers, one-hot encoding and the spread reductions (var, std).

Arguments that may be a tensor or a number are declared ``any`` and sorted out here, so that a
wrong value is reported at the call with what was expected.
"""
from __future__ import annotations

from typing import Any

import sympy

from ..errors import NndslTypeError
from ..ir.builder import Builder
from ..ir.graph import Value
from .core import reduce_dims
from .registry import builtin


def _number(v: Any) -> Any:
    """``v`` as a Python int or float when it is a number (a static dim counts); else ``v``."""
    if isinstance(v, sympy.Expr) and v.is_Integer:
        return int(v)
    if isinstance(v, sympy.Expr) and v.is_number:
        return float(v)
    return v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _desc(v: Any) -> str:
    if isinstance(v, Value):
        return f"{v.name}: {v.type}" if v.name else f"a tensor {v.type}"
    return repr(v)


# ------------------------------------------------------------------------------------- activations
@builtin("leaky_relu", "x: tensor, slope: float = 0.01")
def leaky_relu(b: Builder, x, slope):
    """x where x > 0, else slope * x (F.leaky_relu)."""
    return b.op("leaky_relu", [x], {"slope": slope})


@builtin("elu", "x: tensor, alpha: float = 1.0")
def elu(b: Builder, x, alpha):
    """x where x > 0, else alpha * (exp(x) - 1) (F.elu)."""
    return b.op("elu", [x], {"alpha": alpha})


@builtin("softplus", "x: tensor, beta: float = 1.0, threshold: float = 20.0")
def softplus(b: Builder, x, beta, threshold):
    """log(1 + exp(beta x)) / beta, linear above threshold (F.softplus)."""
    return b.op("softplus", [x], {"beta": beta, "threshold": threshold})


def _unary(name: str, doc: str):
    def fn(b: Builder, x):
        return b.op(name, [x])

    fn.__doc__ = doc
    builtin(name, "x: tensor")(fn)


for _n, _doc in (("hardswish", "x * relu6(x + 3) / 6 (F.hardswish)."), ("rsqrt", "1 / sqrt(x)."),
                 ("sin", "sine (radians)."), ("cos", "cosine (radians).")):
    _unary(_n, _doc)


# -------------------------------------------------------------------------------------- comparisons
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def _comparison(name: str, sym: str):
    def fn(bld: Builder, a, b):
        a, b = _number(a), _number(b)
        if isinstance(a, Value) and isinstance(b, Value):
            return bld.op(name, [a, b])
        if isinstance(a, Value) and _is_number(b):
            return bld.op(name, [a], {"value": b})
        if isinstance(b, Value) and _is_number(a):
            return bld.op(_FLIP[name], [b], {"value": a})
        raise bld.error(f"{name} compares a tensor with a tensor or a number, got {_desc(a)} and {_desc(b)}",
                        cls=NndslTypeError)

    fn.__doc__ = f"a {sym} b elementwise (tensors broadcast, or a tensor and a number): a bool tensor."
    builtin(name, "a: any, b: any")(fn)


for _n, _sym in (("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="), ("ne", "!=")):
    _comparison(_n, _sym)


@builtin("where", "cond: tensor, a: any, b: any")
def where(bld: Builder, cond, a, b):
    """a where cond holds, else b (torch.where); a and b are tensors or numbers."""
    ins, attrs = [cond], {}
    for key, v in (("a", _number(a)), ("b", _number(b))):
        if isinstance(v, Value):
            ins.append(v)
            attrs[key] = None
        elif _is_number(v):
            attrs[key] = v
        else:
            raise bld.error(f"where's argument '{key}' must be a tensor or a number, got {_desc(v)}",
                            cls=NndslTypeError)
    return bld.op("where", ins, attrs)


@builtin("clamp", "x: tensor, min: any = none, max: any = none")
def clamp(bld: Builder, x, min, max):  # noqa: A002 - the argument names users write (torch.clamp's)
    """x bounded by min and/or max: numbers (torch.clamp), or tensors (maximum/minimum, broadcasting)."""
    lo, hi = _number(min), _number(max)
    for key, v in (("min", lo), ("max", hi)):
        if v is not None and not isinstance(v, Value) and not _is_number(v):
            raise bld.error(f"clamp's argument '{key}' must be a number or a tensor, got {_desc(v)}",
                            cls=NndslTypeError)
    if lo is None and hi is None:
        raise bld.error("clamp needs min=, max= or both", cls=NndslTypeError)
    if isinstance(lo, Value) or isinstance(hi, Value):
        if isinstance(lo, Value):
            x = bld.op("maximum", [x, lo])
        elif lo is not None:
            x = bld.op("clamp", [x], {"min": lo, "max": None})
        if isinstance(hi, Value):
            return bld.op("minimum", [x, hi])
        return x if hi is None else bld.op("clamp", [x], {"min": None, "max": hi})
    return bld.op("clamp", [x], {"min": lo, "max": hi})


@builtin("pow", "x: any, y: any")
def pow_(bld: Builder, x, y):
    """x ** y elementwise: two tensors (broadcasting), or a tensor and a number exponent."""
    x, y = _number(x), _number(y)
    if isinstance(x, Value) and isinstance(y, Value):
        return bld.op("pow", [x, y])
    if isinstance(x, Value) and _is_number(y):
        return bld.op("pow_s", [x], {"value": y})
    hint = "write exp(y * log(base)) for a number base" if isinstance(y, Value) else "write x ** y for numbers"
    raise bld.error(f"pow takes a tensor base and a tensor or number exponent, got {_desc(x)} and {_desc(y)}",
                    hint, NndslTypeError)


# ------------------------------------------------------------------------------------------ one-hot
@builtin("one_hot", "x: tensor, classes: int, dtype: str = 'i64'")
def one_hot(b: Builder, x, classes, dtype):
    """Integer x [...] -> [..., classes] with a 1 at each index; dtype i64 (PyTorch's) or e.g. "f32"."""
    return b.op("one_hot", [x], {"classes": classes, "dtype": dtype})


# ------------------------------------------------------------------------------------------ spread
def _spread(name: str, doc: str):
    def fn(b: Builder, x, dim, keepdim, correction, unbiased):
        if unbiased is not None:
            if not isinstance(unbiased, bool):
                raise b.error(f"{name}'s argument 'unbiased' must be true or false, got {_desc(unbiased)}",
                              cls=NndslTypeError)
            if correction != 1:
                raise b.error(f"{name}: give unbiased= or correction=, not both", cls=NndslTypeError)
            correction = 1 if unbiased else 0
        if correction < 0:
            raise b.error(f"{name}: correction must be >= 0, got {correction}", cls=NndslTypeError)
        dims = reduce_dims(b, name, dim)
        return b.op(name, [x], {"dims": (dims,) if isinstance(dims, int) else dims, "keepdim": keepdim,
                                "correction": correction})

    fn.__doc__ = doc
    builtin(name, "x: tensor, dim: any = none, keepdim: bool = false, correction: int = 1, unbiased: any = none")(fn)


_spread("var", "Variance over dim (none: all axes), divisor n - correction (1: unbiased, torch.var).")
_spread("std", "Standard deviation over dim (none: all axes), divisor n - correction (torch.std).")
