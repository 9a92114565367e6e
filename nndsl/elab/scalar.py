"""Compile-time values and their arithmetic.

A compile-time value is a Python ``int``, ``float``, ``bool`` or ``str``, ``None``, a list or
tuple of them, or a symbolic dim (a ``sympy`` expression over the model's symbolic dims
``B``, ``T``). ``eval_scalar`` evaluates an expression to such a value; the elaborator uses
``binop``/``unary``/``call_func`` for the scalar parts of tensor expressions.

In a *dim context* (a type's dims, an argument of kind int/dim/dims/ints, a repeat count)
``/`` must divide exactly and reports an error otherwise; elsewhere ``/`` on two ints gives an
int when exact and a float when not. Symbolic dims always divide as dims (``T / 2``).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import sympy

from .. import limits
from ..errors import NndslLimitError, clip, NndslNameError, NndslShapeError, NndslTypeError, Span, did_you_mean
from ..frontend import ast
from ..ir import dims as D
from ..ir.graph import Value

SCALAR_FUNCS = ("sqrt", "exp", "log", "min", "max", "int", "float", "abs")
NONE_NAMES = ("None", "none")


# ----------------------------------------------------------------------------- describing values
def describe(v: Any) -> str:
    """How an error message names a value: 'a tensor f32[B, 10]', 'the int 3', 'the dim T'."""
    if isinstance(v, Value):
        return f"a tensor {v.type}"
    if isinstance(v, bool):
        return f"the bool {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"the int {v}"
    if isinstance(v, float):
        return f"the float {v:g}"
    if isinstance(v, str):
        return f"the string {clip(repr(v), 80)}"
    if isinstance(v, sympy.Expr):
        return f"the dim {show(v)}"
    if v is None:
        return "none"
    if isinstance(v, (list, tuple)):
        return f"a {'list' if isinstance(v, list) else 'tuple'} of {len(v)}"
    return f"a {type(v).__name__}"


def show(v: Any) -> str:
    """A value as source-like text: 384, T, 2*T, 0.5, true."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, sympy.Expr):
        try:
            return clip(D.dim_str(v))
        except ValueError:
            return clip(str(v))
    if isinstance(v, float):
        return f"{v:g}"
    return clip(str(v))


def unparse(e: Any) -> str:
    """Source-like text of an expression (for messages about hand-built ASTs without source)."""
    if isinstance(e, ast.Num):
        return show(e.value)
    if isinstance(e, ast.Str):
        return repr(e.value)
    if isinstance(e, ast.Bool):
        return show(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.BinOp):
        return f"{_atom(e.left)} {e.op} {_atom(e.right)}"
    if isinstance(e, ast.UnaryOp):
        return f"{e.op}{_atom(e.operand)}"
    if isinstance(e, ast.Call):
        args = [unparse(a) for a in e.args] + [f"{k.name}={unparse(k.value)}" for k in e.kwargs]
        return f"{unparse(e.func)}({', '.join(args)})"
    if isinstance(e, ast.Attribute):
        return f"{unparse(e.value)}.{e.attr}"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(unparse(a) for a in e.items) + "]"
    if isinstance(e, ast.TupleExpr):
        return "(" + ", ".join(unparse(a) for a in e.items) + ")"
    if isinstance(e, ast.EllipsisLit):
        return "..."
    if isinstance(e, ast.Slice):
        parts = ["" if p is None else unparse(p) for p in (e.lower, e.upper, e.step)]
        return ":".join(parts[:2]) + (f":{parts[2]}" if e.step is not None else "")
    if isinstance(e, ast.Subscript):
        return f"{unparse(e.value)}[{', '.join(unparse(i) for i in e.index)}]"
    return "?"


def _atom(e: Any) -> str:
    s = unparse(e)
    return f"({s})" if isinstance(e, ast.BinOp) else s


# ----------------------------------------------------------------------------- numbers and dims
def is_number(v: Any) -> bool:
    """An int, float or symbolic expression (not a bool)."""
    return isinstance(v, (int, float, sympy.Expr)) and not isinstance(v, bool)


def _is_intlike(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, sympy.Expr) and v.is_integer is not False and not v.is_Float
                                  and not v.has(sympy.Float))


def _sym(e: sympy.Expr, span: Optional[Span] = None) -> Any:
    """Simplify a symbolic result: an int or float when it is a number (a located error when too large)."""
    why = limits.check_expr(e)
    if why is None:
        e = sympy.simplify(e)
        why = limits.check_expr(e)
    if why:
        raise NndslLimitError(why, span)
    if e.is_Integer:
        return limits.check_int(int(e), span)
    if e.is_number:
        return float(e)
    return e


def to_dim(v: Any, span: Optional[Span], what: str = "a dim") -> D.Dim:
    """``v`` as a dim (int or symbolic), or a located error naming ``what`` was expected."""
    if isinstance(v, Value):
        raise NndslTypeError(f"expected {what}, got {describe(v)}", span,
                             "sizes must be known at compile time; a tensor's values are not")
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, sympy.Expr):
        e = sympy.simplify(v)
        if e.is_Integer:
            return int(e)
        if e.is_number or e.has(sympy.Float) or e.is_integer is False:
            raise NndslShapeError(f"expected {what}, got {show(e)}, which is not a whole number", span)
        return e
    if isinstance(v, float) and v.is_integer():
        raise NndslTypeError(f"expected {what}, got the float {v:g}", span, f"write {int(v)}, or int(...)")
    raise NndslTypeError(f"expected {what}, got {describe(v)}", span)


# ----------------------------------------------------------------------------- arithmetic
def binop(op: str, a: Any, b: Any, span: Optional[Span], dim: bool = False) -> Any:
    """``a op b`` on compile-time values; ``dim``: ``/`` must divide exactly."""
    if isinstance(a, str) and isinstance(b, str) and op == "+":
        return a + b
    if not (is_number(a) and is_number(b)):
        raise NndslTypeError(f"cannot apply '{op}' to {describe(a)} and {describe(b)}", span)
    if op == "@":
        raise NndslTypeError(f"'@' multiplies tensors, got {describe(a)} and {describe(b)}", span)
    if op in ("/", "//", "%") and not isinstance(b, sympy.Expr) and b == 0:
        raise NndslTypeError(f"division by zero in {show(a)} {op} {show(b)}", span)
    symbolic = isinstance(a, sympy.Expr) or isinstance(b, sympy.Expr)
    if op == "**":
        limits.check_exponent(a, b, span)
    if op == "/":
        return _div(a, b, span, dim, symbolic)
    return limits.check_int(_arith(op, a, b, span, symbolic), span, f"the result of {show(a)} {op} {show(b)}")


def _arith(op: str, a: Any, b: Any, span: Optional[Span], symbolic: bool) -> Any:
    """``a op b`` for + - * // % ** (not /)."""
    if not symbolic:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        if op == "**":
            try:
                out = a ** b
            except (OverflowError, ZeroDivisionError) as e:
                raise NndslTypeError(f"cannot compute {show(a)} ** {show(b)}: {e}", span) from None
            if isinstance(out, complex):
                raise NndslTypeError(f"{show(a)} ** {show(b)} is not a real number", span)
            return out
        raise NndslTypeError(f"unknown operator '{op}'", span)
    x, y = sympy.sympify(a), sympy.sympify(b)
    if op == "+":
        return _sym(x + y, span)
    if op == "-":
        return _sym(x - y, span)
    if op == "*":
        return _sym(x * y, span)
    if op == "//":
        return _sym(sympy.floor(x / y), span)
    if op == "%":
        return _sym(sympy.Mod(x, y), span)
    if op == "**":
        return _sym(x ** y, span)
    raise NndslTypeError(f"unknown operator '{op}'", span)


def _div(a: Any, b: Any, span: Optional[Span], dim: bool, symbolic: bool) -> Any:
    if _is_intlike(a) and _is_intlike(b):
        try:
            out = D.exact_div(a, b)
            if isinstance(out, sympy.Expr) and out.is_integer is False:
                raise ValueError(out)
            return out
        except ValueError:
            if dim or symbolic:
                raise NndslShapeError(f"{show(a)} / {show(b)} does not divide exactly, but a size must be "
                                      "a whole number", span, "use // to round down") from None
            return a / b
    if symbolic:
        return _sym(sympy.sympify(a) / sympy.sympify(b), span)
    try:
        return a / b
    except OverflowError:
        raise NndslLimitError(f"{show(a)} / {show(b)} is too large for a float", span) from None


def unary(op: str, v: Any, span: Optional[Span]) -> Any:
    if not is_number(v):
        raise NndslTypeError(f"cannot apply unary '{op}' to {describe(v)}", span)
    if op == "+":
        return v
    return _sym(-v, span) if isinstance(v, sympy.Expr) else -v


def call_func(name: str, args: list, span: Optional[Span]) -> Any:
    """The compile-time scalar functions: sqrt exp log min max int float abs."""
    if name in ("min", "max"):
        vals = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
        if not vals or not all(is_number(v) for v in vals):
            raise NndslTypeError(f"{name} needs numbers, got {', '.join(describe(v) for v in vals) or 'nothing'}",
                                 span)
        if any(isinstance(v, sympy.Expr) for v in vals):
            return _sym((sympy.Min if name == "min" else sympy.Max)(*vals), span)
        return min(vals) if name == "min" else max(vals)
    if len(args) != 1:
        raise NndslTypeError(f"{name} takes 1 argument, got {len(args)}", span)
    (v,) = args
    if name == "int" and isinstance(v, str):
        try:
            return limits.check_int(int(v), span)
        except ValueError:
            raise NndslTypeError(f"int({clip(repr(v))}): not an integer", span) from None
    if name == "float" and isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise NndslTypeError(f"float({clip(repr(v))}): not a number", span) from None
    if isinstance(v, bool) and name in ("int", "float"):
        return int(v) if name == "int" else float(v)
    if not is_number(v):
        raise NndslTypeError(f"{name} needs a number, got {describe(v)}", span)
    if isinstance(v, sympy.Expr):
        fn = {"sqrt": sympy.sqrt, "exp": sympy.exp, "log": sympy.log, "abs": sympy.Abs,
              "int": sympy.floor, "float": lambda x: x}[name]
        return _sym(fn(v), span)
    if name == "int":
        try:
            return int(v)
        except (OverflowError, ValueError):
            raise NndslTypeError(f"int({show(v)}): not a finite number", span) from None
    if name == "float":
        return float(v)
    if name == "abs":
        return abs(v)
    try:
        return {"sqrt": math.sqrt, "exp": math.exp, "log": math.log}[name](v)
    except (ValueError, OverflowError) as e:
        raise NndslTypeError(f"{name}({show(v)}): {e}", span) from None


# ----------------------------------------------------------------------------- evaluation
def lookup(name: str, env: dict, span: Optional[Span]) -> Any:
    """The value bound to ``name``; an unknown name is a located error with 'did you mean'."""
    if name in env:
        return env[name]
    if name in NONE_NAMES:
        return None
    raise NndslNameError(f"unknown name '{name}'", span, did_you_mean(name, env))


def eval_scalar(expr: Any, env: dict, *, dim: bool = False) -> Any:
    """Evaluate a compile-time expression over ``env`` (names -> compile-time values).

    ``dim=True``: a dim context, where ``/`` must divide exactly. Tensors and calls of
    anything but the scalar functions are errors located at the offending expression.
    """
    if isinstance(expr, (ast.Num, ast.Str, ast.Bool)):
        return expr.value
    if isinstance(expr, ast.Name):
        v = lookup(expr.id, env, expr.span)
        if isinstance(v, Value):
            raise NndslTypeError(f"'{expr.id}' is a tensor, but a compile-time value is needed here", expr.span)
        return v
    if isinstance(expr, ast.BinOp):
        a = eval_scalar(expr.left, env, dim=dim)
        b = eval_scalar(expr.right, env, dim=dim)
        return binop(expr.op, a, b, expr.span, dim)
    if isinstance(expr, ast.UnaryOp):
        return unary(expr.op, eval_scalar(expr.operand, env, dim=dim), expr.span)
    if isinstance(expr, ast.ListExpr):
        return [eval_scalar(x, env, dim=dim) for x in expr.items]
    if isinstance(expr, ast.TupleExpr):
        return tuple(eval_scalar(x, env, dim=dim) for x in expr.items)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in SCALAR_FUNCS:
        if expr.kwargs:
            raise NndslTypeError(f"{expr.func.id} takes no keyword arguments", expr.kwargs[0].span)
        return call_func(expr.func.id, [eval_scalar(a, env, dim=dim) for a in expr.args], expr.span)
    if isinstance(expr, ast.Subscript) and len(expr.index) == 1 and not isinstance(
            expr.index[0], (ast.Slice, ast.EllipsisLit)):
        return index_list(eval_scalar(expr.value, env), eval_scalar(expr.index[0], env, dim=True), expr.span)
    raise NndslTypeError(f"'{unparse(expr)}' cannot be evaluated at compile time", getattr(expr, "span", None),
                         "only numbers, names of compile-time values, arithmetic and "
                         + ", ".join(SCALAR_FUNCS) + " are allowed here")


def index_list(seq: Any, i: Any, span: Optional[Span]) -> Any:
    """``seq[i]`` for a compile-time list or tuple."""
    if not isinstance(seq, (list, tuple)):
        raise NndslTypeError(f"cannot index {describe(seq)}", span)
    if not isinstance(i, int) or isinstance(i, bool):
        raise NndslTypeError(f"a list index must be an int, got {describe(i)}", span)
    if not -len(seq) <= i < len(seq):
        raise NndslTypeError(f"index {i} is out of range for {describe(seq)}", span)
    return seq[i]
