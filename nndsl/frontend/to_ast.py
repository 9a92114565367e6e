"""Lark parse tree -> typed AST (``frontend.ast``), one method per grammar rule, spans from ``meta``.

Run as its own step after parsing (Lark passes ``meta`` only to a standalone transformer).
Also rejects what the grammar lets through but the language does not: unknown dtypes and
scalar types, dims that are not integer arithmetic, a positional argument after a keyword
one, a repeated keyword argument, Python's ``True``/``False``. Errors raised here reach the
caller wrapped in Lark's ``VisitError``; ``parser.parse`` unwraps them.

Representation choices the elaborator relies on:
  * ``None`` (the new-axis index, or a None argument) is ``Name("None")``; ``None`` is a keyword,
    so no user name can shadow it.
  * ``-3`` and ``+3`` fold to ``Num(-3)``/``Num(3)`` (span covers the sign); ``-x`` stays UnaryOp.
  * A parenthesised expression is the expression itself; ``(a, b)``, ``(a,)`` and ``()`` are TupleExpr.
  * ``return (a, b)`` is ``Return([a, b])``, the same as ``return a, b``.
  * ``Definition.returns``: None when there is no ``->``; else a list of types (one for ``-> T``).
"""
from __future__ import annotations

from typing import Any, Optional

from lark import Token, Transformer, v_args

from ..errors import NndslLimitError, NndslSyntaxError, Span, did_you_mean
from ..limits import MAX_INT
from . import ast

DTYPES = ("f32", "f16", "bf16", "f64", "i64", "i32", "bool")
SCALAR_TYPES = ("int", "float", "bool", "str")
_DTYPE_ALIASES = {
    "float32": "f32", "float": "f32", "fp32": "f32", "float16": "f16", "half": "f16", "fp16": "f16",
    "bfloat16": "bf16", "float64": "f64", "double": "f64", "int64": "i64", "long": "i64", "int": "i64",
    "int32": "i32", "bool_": "bool", "boolean": "bool",
}
_SCALAR_ALIASES = {"integer": "int", "long": "int", "int64": "int", "int32": "int", "double": "float",
                   "float32": "float", "float64": "float", "boolean": "bool", "string": "str"}
_DIM_OPS = {"+", "-", "*", "/", "//", "%", "**"}


@v_args(meta=True)
class ToAst(Transformer):
    """Transforms a parse tree of ``nndsl.lark`` into an ``ast.Program``."""

    def __init__(self, file: str, source: str):
        super().__init__(visit_tokens=False)
        self.file = file
        self.source = source

    # ------------------------------------------------------------------------- spans
    def _span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, source=self.source)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column, self.source)

    def _tspan(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column, self.source)

    def _join(self, a: Span, b: Span) -> Span:
        return Span(self.file, a.line, a.col, b.end_line, b.end_col, self.source)

    # ------------------------------------------------------------------------- program
    def start(self, meta, children) -> ast.Program:
        defs = [c for c in children if isinstance(c, ast.Definition)]
        trains = [c for c in children if isinstance(c, ast.TrainSection)]
        return ast.Program(self.file, self.source, defs, trains)

    def definition(self, meta, children) -> ast.Definition:
        kind, name, params, returns, body = children
        return ast.Definition(kind, str(name), params, returns, body, self._span(meta))

    def def_kind(self, meta, children) -> str:
        return str(children[0])

    def params(self, meta, children) -> list[ast.Param]:
        return list(children)

    def param(self, meta, children) -> ast.Param:
        name, type_, default = children
        return ast.Param(str(name), type_, default, self._span(meta))

    def default(self, meta, children) -> Optional[ast.Expr]:
        return children[0] if children else None

    def returns(self, meta, children) -> Optional[list[ast.TypeExpr]]:
        return list(children) if children else None

    def tensor_type(self, meta, children) -> ast.TensorTypeExpr:
        name, dims = children
        dtype = self._dtype(name)
        dims = dims or []
        for d in dims:
            self._check_dim(d)
        return ast.TensorTypeExpr(dtype, dims, self._span(meta))

    def scalar_type(self, meta, children) -> ast.ScalarTypeExpr:
        (name,) = children
        if name in SCALAR_TYPES:
            return ast.ScalarTypeExpr(str(name), self._span(meta))
        if name in DTYPES:
            raise NndslSyntaxError(f"'{name}' needs a shape to be a tensor type", self._tspan(name),
                                   f"write e.g. {name}[B, D]; scalar types are " + ", ".join(SCALAR_TYPES))
        hint = (f"did you mean '{_SCALAR_ALIASES[name]}'?" if name in _SCALAR_ALIASES
                else did_you_mean(name, SCALAR_TYPES))
        raise NndslSyntaxError(f"unknown type '{name}'", self._tspan(name),
                               hint or "types are a dtype with a shape (f32[B, D]) or int, float, bool, str")

    def _dtype(self, name: Token) -> str:
        if name in DTYPES:
            return str(name)
        hint = (f"did you mean '{_DTYPE_ALIASES[name]}'?" if name in _DTYPE_ALIASES
                else did_you_mean(name, DTYPES))
        raise NndslSyntaxError(f"unknown dtype '{name}'", self._tspan(name),
                               hint or "dtypes are " + ", ".join(DTYPES))

    def _check_dim(self, e: ast.Expr) -> None:
        """A dim is a non-negative integer, a name, or + - * / // % ** of dims (parentheses allowed)."""
        if isinstance(e, ast.Num) and isinstance(e.value, int) and e.value >= 0:
            return
        if isinstance(e, ast.Name) and e.id != "None":
            return
        if isinstance(e, ast.BinOp) and e.op in _DIM_OPS:
            self._check_dim(e.left)
            self._check_dim(e.right)
            return
        if isinstance(e, ast.UnaryOp):
            self._check_dim(e.operand)
            return
        raise NndslSyntaxError("a dimension must be an integer, a name, or arithmetic on them",
                               e.span, "e.g. f32[B, T, 4 * D] or f32[B, D / heads]")

    # ------------------------------------------------------------------------- statements
    def body(self, meta, children) -> list[ast.Stmt]:
        return [c for c in children if c is not None]

    def assign(self, meta, children) -> ast.Assign:
        *names, value = children
        return ast.Assign([ast.Name(str(n), self._tspan(n)) for n in names], value, self._span(meta))

    def return_stmt(self, meta, children) -> ast.Return:
        values = list(children)
        if len(values) == 1 and isinstance(values[0], ast.TupleExpr) and values[0].items:
            values = list(values[0].items)
        return ast.Return(values, self._span(meta))

    def repeat_stmt(self, meta, children) -> ast.Repeat:
        (count, name), body = children
        return ast.Repeat(count, name, body, self._span(meta))

    def repeat_head(self, meta, children) -> tuple[ast.Expr, Optional[str]]:
        count, name = children
        return count, str(name) if name is not None else None

    def train(self, meta, children) -> ast.TrainSection:
        name, *entries = children
        return ast.TrainSection(name, [e for e in entries if e is not None], self._span(meta))

    def train_head(self, meta, children) -> Optional[str]:
        (name,) = children
        return str(name) if name is not None else None

    def train_entry(self, meta, children) -> ast.TrainEntry:
        key, value = children
        return ast.TrainEntry(str(key), value, self._span(meta))

    # ------------------------------------------------------------------------- expressions
    def binop(self, meta, children) -> ast.BinOp:
        left, op, right = children
        return ast.BinOp(str(op), left, right, self._span(meta))

    def unaryop(self, meta, children) -> ast.Expr:
        op, operand = children
        if isinstance(operand, ast.Num):  # fold a signed literal: -1 is Num(-1)
            value = -operand.value if op == "-" else operand.value
            return ast.Num(value, self._span(meta))
        return ast.UnaryOp(str(op), operand, self._span(meta))

    def call(self, meta, children) -> ast.Call:
        name, args = children
        return self._call(ast.Name(str(name), self._tspan(name)), args, meta)

    def method_call(self, meta, children) -> ast.Call:
        value, name, args = children
        attr = ast.Attribute(value, str(name), self._join(value.span, self._tspan(name)))
        return self._call(attr, args, meta)

    def attribute(self, meta, children) -> ast.Attribute:
        value, name = children
        return ast.Attribute(value, str(name), self._span(meta))

    def _call(self, func: ast.Expr, args: Optional[list], meta) -> ast.Call:
        positional: list[ast.Expr] = []
        keywords: list[ast.Keyword] = []
        for a in args or []:
            if isinstance(a, ast.Keyword):
                if any(k.name == a.name for k in keywords):
                    raise NndslSyntaxError(f"keyword argument '{a.name}' is given twice", a.span)
                keywords.append(a)
            elif keywords:
                raise NndslSyntaxError("a positional argument cannot follow a keyword argument", a.span,
                                       f"move it before '{keywords[0].name}=' or give it a name")
            else:
                positional.append(a)
        return ast.Call(func, positional, keywords, self._span(meta))

    def args(self, meta, children) -> list:
        return list(children)

    def kwarg(self, meta, children) -> ast.Keyword:
        name, value = children
        return ast.Keyword(str(name), value, self._span(meta))

    def subscript(self, meta, children) -> ast.Subscript:
        value, index = children
        return ast.Subscript(value, index, self._span(meta))

    def subscripts(self, meta, children) -> list:
        return [ast.EllipsisLit(self._tspan(c)) if isinstance(c, Token) else c for c in children]

    def slice(self, meta, children) -> ast.Slice:
        lower, upper, step = children
        return ast.Slice(lower, upper, step, self._span(meta))

    def exprs(self, meta, children) -> list[ast.Expr]:
        return list(children)

    def list(self, meta, children) -> ast.ListExpr:
        (items,) = children
        return ast.ListExpr(items or [], self._span(meta))

    def tuple(self, meta, children) -> ast.TupleExpr:
        if not children:
            return ast.TupleExpr([], self._span(meta))
        first, rest = children
        return ast.TupleExpr([first, *(rest or [])], self._span(meta))

    def paren(self, meta, children) -> ast.Expr:
        return children[0]

    def name(self, meta, children) -> ast.Name:
        (tok,) = children
        if tok in ("True", "False"):
            raise NndslSyntaxError(f"'{tok}' is not a value in nndsl", self._tspan(tok),
                                   f"did you mean '{tok.lower()}'?")
        return ast.Name(str(tok), self._tspan(tok))

    def number(self, meta, children) -> ast.Num:
        (tok,) = children
        text = str(tok)
        is_float = any(c in text for c in ".eE")
        span = self._tspan(tok)
        shown = text if len(text) <= 40 else text[:20] + "..." + text[-10:]
        if not is_float:
            digits = text.replace("_", "").lstrip("0")
            if len(digits) > len(str(MAX_INT)) or int(digits or "0") > MAX_INT:
                raise NndslLimitError(f"the integer {shown} is too large; the limit is {MAX_INT} (int64)", span)
            return ast.Num(int(digits or "0"), span)
        value = float(text)
        if value == float("inf"):
            raise NndslLimitError(f"the number {shown} is too large for a float", span)
        return ast.Num(value, span)

    def string(self, meta, children) -> ast.Str:
        (tok,) = children
        return ast.Str(_unescape(str(tok)[1:-1]), self._tspan(tok))

    def true(self, meta, children) -> ast.Bool:
        return ast.Bool(True, self._tspan(children[0]))

    def false(self, meta, children) -> ast.Bool:
        return ast.Bool(False, self._tspan(children[0]))

    def none(self, meta, children) -> ast.Name:
        return ast.Name("None", self._tspan(children[0]))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    """Backslash escapes \\n \\t \\r \\0 \\\\ \\" \\'; any other backslash is kept as written."""
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
