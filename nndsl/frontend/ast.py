"""The typed AST of a .nn file: one dataclass per grammar construct, each with its source span.

Produced by ``frontend.to_ast`` from Lark's parse tree; consumed by ``elaborate``.
Method calls ``x.f(a)`` are kept as ``Call(func=Attribute(x, "f"), ...)``; the
elaborator turns them into ``f(x, a)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import Span


# ----------------------------------------------------------------------------- expressions
@dataclass
class Num:
    value: Union[int, float]
    span: Span


@dataclass
class Str:
    value: str
    span: Span


@dataclass
class Bool:
    value: bool
    span: Span


@dataclass
class Name:
    id: str
    span: Span


@dataclass
class BinOp:
    op: str  # one of + - * / // % @ **
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass
class UnaryOp:
    op: str  # "-" or "+"
    operand: "Expr"
    span: Span


@dataclass
class Keyword:
    name: str
    value: "Expr"
    span: Span


@dataclass
class Call:
    func: "Expr"  # Name for f(...), Attribute for x.f(...)
    args: list["Expr"]
    kwargs: list[Keyword]
    span: Span


@dataclass
class Attribute:
    value: "Expr"
    attr: str
    span: Span


@dataclass
class Slice:
    lower: Optional["Expr"]
    upper: Optional["Expr"]
    step: Optional["Expr"]
    span: Span


@dataclass
class EllipsisLit:
    span: Span


@dataclass
class Subscript:
    value: "Expr"
    index: list[Union["Expr", Slice, EllipsisLit]]
    span: Span


@dataclass
class ListExpr:
    items: list["Expr"]
    span: Span


@dataclass
class TupleExpr:
    items: list["Expr"]
    span: Span


Expr = Union[Num, Str, Bool, Name, BinOp, UnaryOp, Call, Attribute, Subscript, ListExpr, TupleExpr]


# ----------------------------------------------------------------------------- types
@dataclass
class TensorTypeExpr:
    dtype: str  # f32, f16, bf16, f64, i64, i32, bool
    dims: list[Expr]  # each a dim expression: Num, Name, or arithmetic of them
    span: Span


@dataclass
class ScalarTypeExpr:
    name: str  # int, float, bool, str
    span: Span


TypeExpr = Union[TensorTypeExpr, ScalarTypeExpr]


# ----------------------------------------------------------------------------- statements
@dataclass
class Assign:
    targets: list[Name]  # one name, or several for tuple unpacking
    value: Expr
    span: Span


@dataclass
class Return:
    values: list[Expr]
    span: Span


@dataclass
class Repeat:
    count: Expr
    name: Optional[str]  # `repeat L as blocks { ... }` -> parameters under blocks.<i>.
    body: list["Stmt"]
    span: Span


Stmt = Union[Assign, Return, Repeat]


# ----------------------------------------------------------------------------- definitions
@dataclass
class Param:
    name: str
    type: TypeExpr
    default: Optional[Expr]
    span: Span


@dataclass
class Definition:
    """A ``block`` (reusable sub-network) or a ``model`` (an entry point with inputs)."""

    kind: str  # "block" or "model"
    name: str
    params: list[Param]
    returns: Optional[list[TypeExpr]]
    body: list[Stmt]
    span: Span


@dataclass
class TrainEntry:
    key: str
    value: Expr
    span: Span


@dataclass
class TrainSection:
    model: Optional[str]  # `train Name { ... }`; None: the file's only model
    entries: list[TrainEntry]
    span: Span


@dataclass
class Program:
    file: str
    source: str
    definitions: list[Definition] = field(default_factory=list)
    trains: list[TrainSection] = field(default_factory=list)

    def blocks(self) -> dict[str, Definition]:
        return {d.name: d for d in self.definitions if d.kind == "block"}

    def models(self) -> dict[str, Definition]:
        return {d.name: d for d in self.definitions if d.kind == "model"}


# ----------------------------------------------------------------------------- traversal
def children(node: object) -> list:
    """The direct sub-nodes of an expression or statement (None parts left out)."""
    if isinstance(node, Call):
        parts = [node.func, *node.args, *(k.value for k in node.kwargs)]
    elif isinstance(node, BinOp):
        parts = [node.left, node.right]
    elif isinstance(node, UnaryOp):
        parts = [node.operand]
    elif isinstance(node, Attribute):
        parts = [node.value]
    elif isinstance(node, Subscript):
        parts = [node.value, *node.index]
    elif isinstance(node, Slice):
        parts = [node.lower, node.upper, node.step]
    elif isinstance(node, (ListExpr, TupleExpr)):
        parts = list(node.items)
    elif isinstance(node, Assign):
        parts = [node.value]
    elif isinstance(node, Return):
        parts = list(node.values)
    elif isinstance(node, Repeat):
        parts = [node.count, *node.body]
    else:
        parts = []
    return [p for p in parts if p is not None]


def walk(node: object):
    """``node`` and every node under it, parents before children, in source order."""
    yield node
    for c in children(node):
        yield from walk(c)
