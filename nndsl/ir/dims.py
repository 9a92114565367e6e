"""Symbolic tensor dimensions.

A dim is a Python ``int`` when it is known at compile time (hyperparameters are
bound to numbers before elaboration) or a ``sympy`` expression over the symbolic
dims of the model's inputs (``B``, ``T``). sympy decides equality
(``T + T == 2 * T``) and simplifies; ``dim_code`` prints a dim as Python integer
arithmetic for generated code.
"""
from __future__ import annotations

from typing import Iterable, Union

import sympy

Dim = Union[int, sympy.Expr]


def symbol(name: str) -> sympy.Symbol:
    """The symbolic dim ``name`` (a positive integer)."""
    return sympy.Symbol(name, integer=True, positive=True)


def norm(d) -> Dim:
    """Canonical form: a plain int when the expression is a number, else the simplified expression."""
    if isinstance(d, bool):
        raise TypeError("a bool is not a dim")
    if isinstance(d, int):
        return d
    e = sympy.sympify(d)
    # expand is enough (and ~100x faster) for polynomials; floor needs simplify. Min and Max
    # already fold what they can when built (Max(T - 1, 0) is T - 1): simplify would cost ~0.3 s
    # (and with Min/Max inside a floor, simplify costs as much: those stay as built)
    e = sympy.simplify(e) if e.has(sympy.floor) and not e.has(sympy.Min, sympy.Max) else sympy.expand(e)
    if e.is_Integer:
        return int(e)
    if e.is_number:
        raise ValueError(f"dim {e} is not a whole number")
    return e


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def equal(a: Dim, b: Dim) -> bool:
    """True when two dims are provably equal."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    # fast paths (simplify costs milliseconds): the same expression, or two distinct atoms
    if a == b:
        return True
    if all(isinstance(x, (int, sympy.Symbol, sympy.Integer)) for x in (a, b)):
        return False
    diff = sympy.sympify(a) - sympy.sympify(b)
    return (sympy.simplify(diff) if diff.has(sympy.floor, sympy.Min, sympy.Max) else sympy.expand(diff)) == 0


def product(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = norm(out * d) if not (isinstance(out, int) and isinstance(d, int)) else out * d
    return out


def floordiv(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return norm(sympy.floor(sympy.sympify(a) / sympy.sympify(b)))


def exact_div(a: Dim, b: Dim) -> Dim:
    """a / b where the result must be a whole dim; raises ValueError when it is provably not."""
    if isinstance(a, int) and isinstance(b, int):
        if b == 0 or a % b != 0:
            raise ValueError(f"{a} is not divisible by {b}")
        return a // b
    e = sympy.simplify(sympy.sympify(a) / sympy.sympify(b))
    if e.is_number and not e.is_Integer:
        raise ValueError(f"{a} is not divisible by {b}")
    return norm(e)


def dim_str(d: Dim) -> str:
    """Human-readable form: ``B``, ``2*T``, ``T//2``."""
    if isinstance(d, int):
        return str(d)
    return _code(d)


def shape_str(shape: Iterable[Dim]) -> str:
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


def free_symbols(d: Dim) -> set[str]:
    if isinstance(d, int):
        return set()
    return {s.name for s in d.free_symbols}


def dim_code(d: Dim) -> str:
    """Python integer arithmetic computing ``d`` from variables named after its symbols."""
    if isinstance(d, int):
        return str(d)
    return _code(d)


def _code(e: sympy.Expr) -> str:
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return e.name
    if isinstance(e, sympy.floor):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        return f"({_code(num)}) // ({_code(den)})"
    if e.is_Add:
        terms = [_code(t) for t in e.as_ordered_terms()]
        out = terms[0]
        for t in terms[1:]:
            out += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
        return out
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        num, den = sympy.fraction(sympy.Rational(coeff))
        factors = [_atom(f) for f in sympy.Mul.make_args(rest)]
        body = "*".join(factors)
        if num == -1:
            body = "-" + body
        elif num != 1:
            body = f"{num}*{body}"
        if den != 1:
            body = f"({body}) // {den}"
        return body
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
        return "*".join([_atom(e.base)] * int(e.exp))
    if isinstance(e, (sympy.Min, sympy.Max)):
        fn = "min" if isinstance(e, sympy.Min) else "max"
        return f"{fn}(" + ", ".join(_code(a) for a in e.args) + ")"
    raise ValueError(f"cannot print dim expression {e}")


def _atom(e: sympy.Expr) -> str:
    s = _code(e)
    return s if (e.is_Symbol or e.is_Integer) else f"({s})"
