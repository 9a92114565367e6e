"""Symbolic tensor dimensions.

A dim is a Python ``int`` when it is known at compile time (hyperparameters are
bound to numbers before elaboration) or a ``sympy`` expression over the symbolic
dims of the model's inputs (``B``, ``T``). sympy decides equality
(``T + T == 2 * T``) and simplifies; ``dim_code`` prints a dim as Python integer
arithmetic for generated code.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Union

import sympy

Dim = Union[int, sympy.Expr]


def _sympify(d) -> sympy.Expr:
    """sympy.sympify, refusing text: sympify parses a string with eval, and a dim is never text."""
    if isinstance(d, str):
        raise TypeError(f"a dim cannot be a string ({d[:20]!r})")
    return sympy.sympify(d)


def symbol(name: str) -> sympy.Symbol:
    """The symbolic dim ``name`` (a positive integer)."""
    return sympy.Symbol(name, integer=True, positive=True)


def norm(d) -> Dim:
    """Canonical form: a plain int when the expression is a number, else the simplified expression."""
    if isinstance(d, bool):
        raise TypeError("a bool is not a dim")
    if isinstance(d, int):
        return d
    e = _sympify(d)
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
    diff = _sympify(a) - _sympify(b)
    return (sympy.simplify(diff) if diff.has(sympy.floor, sympy.Min, sympy.Max) else sympy.expand(diff)) == 0


def product(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = norm(out * d) if not (isinstance(out, int) and isinstance(d, int)) else out * d
    return out


def floordiv(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return norm(sympy.floor(_sympify(a) / _sympify(b)))


def exact_div(a: Dim, b: Dim) -> Dim:
    """a / b where the result must be a whole dim; raises ValueError when it is provably not."""
    if isinstance(a, int) and isinstance(b, int):
        if b == 0 or a % b != 0:
            raise ValueError(f"{a} is not divisible by {b}")
        return a // b
    e = sympy.simplify(_sympify(a) / _sympify(b))
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


def dim_code(d: Dim, names: Optional[Mapping[str, str]] = None) -> str:
    """Python integer arithmetic computing ``d``; each symbol prints as ``names[symbol]``.

    Generated code passes ``names`` (symbol -> a generated variable such as ``d0``), so no dim
    name of the source reaches generated code; ``names=None`` prints symbols as they are (for
    messages and for tests that evaluate one expression). Raises ValueError for what it cannot print.
    """
    if isinstance(d, int):
        return str(d)
    return _Printer(names).code(d)


def expr_code(e, names: Optional[Mapping[str, str]] = None) -> str:
    """Python code for a scalar expression over dims, integer or real (``1/sqrt(T)``); math as ``rt.math``."""
    if isinstance(e, int):
        return dim_code(e, names)
    e = _sympify(e) if not isinstance(e, sympy.Basic) else e
    p = _Printer(names)
    return p.code(e) if e.is_integer else p.real(e)


def _code(e: sympy.Expr) -> str:
    return _Printer(None).code(e)


class _Printer:
    """Prints sympy dims as Python: integer arithmetic (``code``) or float arithmetic (``real``)."""

    def __init__(self, names: Optional[Mapping[str, str]]):
        self.names = names

    def symbol(self, e: sympy.Symbol) -> str:
        if self.names is None:
            return e.name
        try:
            return self.names[e.name]
        except KeyError:
            raise ValueError(f"dim {e.name} is not bound in the generated code") from None

    def code(self, e: sympy.Expr) -> str:
        if e.is_Integer:
            return str(int(e))
        if e.is_Symbol:
            return self.symbol(e)
        if isinstance(e, sympy.floor):
            num, den = sympy.fraction(sympy.together(e.args[0]))
            if num.is_integer and den.is_integer:
                return f"({self.code(num)}) // ({self.code(den)})"
            return f"rt.math.floor({self.real(e.args[0])})"
        if isinstance(e, sympy.Mod):
            return f"({self.code(e.args[0])}) % ({self.code(e.args[1])})"
        if e.is_Add:
            terms = [self.code(t) for t in e.as_ordered_terms()]
            out = terms[0]
            for t in terms[1:]:
                out += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
            return out
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            num, den = sympy.fraction(sympy.Rational(coeff))
            body = "*".join(self.atom(f) for f in sympy.Mul.make_args(rest))
            if num == -1:
                body = "-" + body
            elif num != 1:
                body = f"{num}*{body}"
            if den != 1:
                body = f"({body}) // {den}"
            return body
        if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
            return "*".join([self.atom(e.base)] * int(e.exp))
        if isinstance(e, (sympy.Min, sympy.Max)):
            fn = "min" if isinstance(e, sympy.Min) else "max"
            return f"{fn}(" + ", ".join(self.code(a) for a in e.args) + ")"
        if isinstance(e, sympy.Abs):
            return f"abs({self.code(e.args[0])})"
        raise ValueError(f"cannot print dim expression {e}")

    def atom(self, e: sympy.Expr) -> str:
        s = self.code(e)
        return s if (e.is_Symbol or (e.is_Integer and int(e) >= 0)) else f"({s})"

    _FUNCS = {sympy.exp: "rt.math.exp", sympy.log: "rt.math.log", sympy.floor: "rt.math.floor",
              sympy.ceiling: "rt.math.ceil", sympy.Abs: "abs"}

    def real(self, e: sympy.Expr) -> str:
        """Float arithmetic for a real-valued expression (every operand parenthesized)."""
        if e.is_integer:
            return f"({self.code(e)})"
        if e.is_Rational:
            return f"({int(e.p)} / {int(e.q)})"
        if e.is_Float:
            v = float(e)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError(f"non-finite number {e} in a dim expression")
            return f"({v!r})"
        if e is sympy.E:
            return "rt.math.e"
        if e is sympy.pi:
            return "rt.math.pi"
        if e.is_Add:
            return "(" + " + ".join(self.real(t) for t in e.args) + ")"
        if e.is_Mul:
            return "(" + " * ".join(self.real(t) for t in e.args) + ")"
        if e.is_Pow:
            base, exp = e.args
            if exp == sympy.Rational(1, 2):
                return f"rt.math.sqrt({self.real(base)})"
            if exp == sympy.Rational(-1, 2):
                return f"(1 / rt.math.sqrt({self.real(base)}))"
            return f"({self.real(base)} ** {self.real(exp)})"
        for fn, name in self._FUNCS.items():
            if isinstance(e, fn):
                return f"{name}({self.real(e.args[0])})"
        if isinstance(e, (sympy.Min, sympy.Max)):
            fn = "min" if isinstance(e, sympy.Min) else "max"
            return f"{fn}(" + ", ".join(self.real(a) for a in e.args) + ")"
        raise ValueError(f"cannot print scalar expression {e}")
