"""Hand-built ASTs for elaborator tests: short constructors with controllable spans.

Every constructor takes ``at=(line, col)`` to place the node, so tests can check where an
error points without going through the parser.
"""
from __future__ import annotations

from nndsl.errors import Span
from nndsl.frontend import ast

FILE = "t.nn"


def sp(at=(1, 1)) -> Span:
    line, col = at
    return Span(FILE, line, col, line, col + 1)


def e(x, at=(1, 1)):
    """A Python value or an AST node -> an expression."""
    if isinstance(x, (ast.Num, ast.Str, ast.Bool, ast.Name, ast.BinOp, ast.UnaryOp, ast.Call, ast.Attribute,
                      ast.Subscript, ast.ListExpr, ast.TupleExpr, ast.Slice, ast.EllipsisLit)):
        return x
    if isinstance(x, bool):
        return ast.Bool(x, sp(at))
    if isinstance(x, (int, float)):
        return ast.Num(x, sp(at))
    if isinstance(x, str):
        return ast.Name(x, sp(at))
    if isinstance(x, list):
        return ast.ListExpr([e(i, at) for i in x], sp(at))
    if x is Ellipsis:
        return ast.EllipsisLit(sp(at))
    raise TypeError(x)


def s(text, at=(1, 1)):
    return ast.Str(text, sp(at))


def op(o, left, right, at=(1, 1)):
    return ast.BinOp(o, e(left, at), e(right, at), sp(at))


def neg(x, at=(1, 1)):
    return ast.UnaryOp("-", e(x), sp(at))


def call(f, *args, at=(1, 1), **kw):
    kws = [ast.Keyword(k, e(v, at) if not isinstance(v, str) or k != "name" else s(v, at), sp(at))
           for k, v in kw.items()]
    return ast.Call(ast.Name(f, sp(at)), [e(a, at) for a in args], kws, sp(at))


def meth(obj, f, *args, at=(1, 1), **kw):
    c = call(f, *args, at=at, **kw)
    c.func = ast.Attribute(e(obj), f, sp(at))
    return c


def sl(lo=None, hi=None, step=None, at=(1, 1)):
    return ast.Slice(None if lo is None else e(lo), None if hi is None else e(hi),
                     None if step is None else e(step), sp(at))


def sub(v, *idx, at=(1, 1)):
    return ast.Subscript(e(v), [e(i) for i in idx], sp(at))


def tt(dtype, *dims, at=(1, 1)):
    return ast.TensorTypeExpr(dtype, [e(d, at) for d in dims], sp(at))


def st(name, at=(1, 1)):
    return ast.ScalarTypeExpr(name, sp(at))


def param(name, type, default=None, at=(1, 1)):
    return ast.Param(name, type, None if default is None else (s(default) if isinstance(default, str)
                                                                and type.name == "str" else e(default)), sp(at))


def assign(targets, value, at=(1, 1)):
    names = [ast.Name(t, sp(at)) for t in targets.split(",")] if isinstance(targets, str) else targets
    return ast.Assign([ast.Name(n.id.strip(), n.span) for n in names], e(value), sp(at))


def ret(*vals, at=(1, 1)):
    return ast.Return([e(v) for v in vals], sp(at))


def rep(count, body, name=None, at=(1, 1)):
    return ast.Repeat(e(count), name, body, sp(at))


def block(name, params, returns, body, at=(1, 1)):
    return ast.Definition("block", name, params, returns, body, sp(at))


def model(name, params, returns, body, at=(1, 1)):
    return ast.Definition("model", name, params, returns, body, sp(at))


def program(*defs, trains=()):
    return ast.Program(FILE, "", list(defs), list(trains))
