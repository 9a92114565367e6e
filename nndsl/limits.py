"""Bounds on compile-time work, so that no source, however hostile, makes ``check`` hang or blow up.

Every bound is a named constant below, checked where the work happens, and reported as a
located ``NndslLimitError`` naming the offending text and the limit:

* ``MAX_INT``            the largest compile-time integer (a literal, a hyperparameter, any
                         intermediate of scalar arithmetic): int64, what PyTorch sizes are.
* ``MAX_DIM``            the largest static size of one tensor axis.
* ``MAX_NUMEL``          the most elements a tensor type or a parameter may have.
* ``MAX_EXPONENT``       the largest exponent of ``**`` on compile-time ints and dims (sympy would
                         expand ``(B + 1) ** 100000`` into a polynomial of that many terms).
* ``MAX_DIM_TERMS``      the largest symbolic dim expression (sympy nodes), e.g. from a doubling
                         ``concat`` inside a long ``repeat``.
* ``MAX_REPEAT``         the largest ``repeat`` count.
* ``MAX_STEPS``          the most statements one elaboration runs (nested repeats and block calls
                         unroll; each unrolled statement counts once).
* ``MAX_NESTING``        the deepest nesting of expressions and bodies in the source.
* ``MAX_SOURCE_CHARS``   the longest source text.
"""
from __future__ import annotations

from typing import Any, Optional

import sympy

from .errors import NndslLimitError, Span

MAX_INT = 2 ** 63 - 1
MAX_DIM = 2 ** 40
MAX_NUMEL = 2 ** 40
MAX_EXPONENT = 64
MAX_DIM_TERMS = 100
MAX_REPEAT = 10_000
MAX_STEPS = 20_000
MAX_NESTING = 100
MAX_SOURCE_CHARS = 2_000_000


def check_int(v: Any, span: Optional[Span], what: str = "a compile-time integer") -> Any:
    """``v`` unchanged, or a located error when it is an int beyond int64."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
        raise NndslLimitError(f"{what} is too large: it has {len(str(abs(v)))} digits; the limit is "
                              f"{MAX_INT} (int64)", span)
    return v


def check_exponent(base: Any, exp: Any, span: Optional[Span]) -> None:
    """Refuse ``base ** exp`` on ints or dims when ``|exp|`` exceeds MAX_EXPONENT (unless the base is
    0, 1 or -1, whose powers stay small)."""
    if isinstance(exp, bool) or isinstance(base, bool):
        return
    if isinstance(exp, sympy.Expr) and not exp.is_Number:
        if isinstance(base, int) and base in (0, 1, -1):
            return
        raise NndslLimitError("an exponent must be a number known at compile time, not a symbolic dim", span)
    if isinstance(base, float):
        return  # float powers overflow to an error or inf in constant time
    if isinstance(exp, (int, sympy.Integer)) and abs(int(exp)) > MAX_EXPONENT:
        if isinstance(base, int) and base in (0, 1, -1):
            return
        raise NndslLimitError(f"the exponent {int(exp)} is too large; the limit is {MAX_EXPONENT}", span)


def expr_size(e: Any, limit: int = MAX_DIM_TERMS) -> int:
    """Number of sympy nodes in ``e`` (counting stops a little past ``limit``)."""
    if not isinstance(e, sympy.Basic):
        return 1
    n, stack = 0, [e]
    while stack and n <= limit:
        x = stack.pop()
        n += 1
        stack.extend(x.args)
    return n


def check_expr(e: Any) -> Optional[str]:
    """Why symbolic value ``e`` is too large to keep computing with (too many terms, or an integer
    coefficient beyond int64), or None."""
    if not isinstance(e, sympy.Basic):
        return None
    if expr_size(e) > MAX_DIM_TERMS:
        return f"a symbolic size grew too large (over {MAX_DIM_TERMS} terms); the limit is {MAX_DIM_TERMS}"
    if any(abs(n.p) > MAX_INT or abs(n.q) > MAX_INT for n in e.atoms(sympy.Rational)):
        return f"a symbolic size has a coefficient beyond int64 (the limit is {MAX_INT})"
    return None


def check_dim(d: Any) -> Optional[str]:
    """Why dim ``d`` (an int or a sympy expression) is not allowed, or None when it is."""
    if isinstance(d, int):
        if d < 0:
            return f"a size cannot be negative, got {d}"
        if d > MAX_DIM:
            return f"a size of {d} is too large; the limit is {MAX_DIM} per axis"
        return None
    why = check_expr(d)
    if why:
        return why
    if d.is_negative:
        return "a size cannot be negative, got a size that is negative for every value of its dims"
    return None


def check_numel(shape: tuple, what: str = "a tensor") -> Optional[str]:
    """Why a shape has too many elements (static sizes only), or None."""
    n = 1
    for d in shape:
        if isinstance(d, int):
            n *= d
    if n > MAX_NUMEL:
        return f"{what} would have {n:,} elements; the limit is {MAX_NUMEL:,}"
    return None


class StepCounter:
    """Counts the statements an elaboration runs; a located error past MAX_STEPS."""

    def __init__(self) -> None:
        self.steps = 0

    def step(self, span: Optional[Span]) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise NndslLimitError(f"this model unrolls to more than {MAX_STEPS:,} statements (repeats and "
                                  f"block calls multiply); the limit is {MAX_STEPS:,}", span,
                                  "lower a repeat count")
