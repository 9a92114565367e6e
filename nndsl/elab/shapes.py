"""Declared tensor types: resolving them to IR types and unifying them with actual types.

A declared type ``f32[B, T, D / heads]`` is a pattern. Matching it against an actual type
checks the dtype and the rank, then each dim: a bare name that is not bound yet (and that the
caller allows to bind) binds to the actual dim; every other dim expression is evaluated once all
names are bound and must equal the actual dim. A mismatch is a located error that names both
types and the bindings involved:

    CausalSelfAttention expects x: f32[B, T, D] with D = 384, got f32[B, T, 128]
        expected dim 2 to be 384 (CausalSelfAttention's `D`), got 128
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..errors import NndslError, NndslShapeError, NndslTypeError, Span, did_you_mean
from ..frontend import ast
from ..ir import dims as D
from ..ir.types import DTYPES, TensorType
from .scalar import eval_scalar, show, to_dim, unparse


def type_text(t: Any) -> str:
    """Source-like text of a declared type: 'f32[B, T, D]', 'int'."""
    if isinstance(t, ast.TensorTypeExpr):
        return f"{t.dtype}[{', '.join(unparse(d) for d in t.dims)}]"
    return t.name


def names_in(expr: Any) -> list[str]:
    """The names a dim expression mentions, in order, without repeats."""
    out: list[str] = []
    for e in ast.walk(expr):
        if isinstance(e, ast.Name) and e.id not in out:
            out.append(e.id)
    return out


def check_dtype(t: ast.TensorTypeExpr) -> None:
    if t.dtype not in DTYPES:
        raise NndslTypeError(f"unknown dtype '{t.dtype}'", t.span,
                             did_you_mean(t.dtype, DTYPES) or f"dtypes: {', '.join(DTYPES)}")


def resolve(t: ast.TensorTypeExpr, env: dict) -> TensorType:
    """The IR type of a declared type whose names are all bound in ``env``."""
    check_dtype(t)
    dims = []
    for d in t.dims:
        v = to_dim(eval_scalar(d, env, dim=True), d.span)
        try:
            TensorType((v,), t.dtype)  # each size alone: negative or over a limit -> located at it
        except NndslError as err:
            err.span = err.span or d.span
            raise
        dims.append(v)
    try:
        return TensorType(tuple(dims), t.dtype)
    except NndslError as err:
        err.span = err.span or t.span
        raise


class Matcher:
    """Unifies declared types with actual ones, binding pattern names in ``env``.

    ``match`` binds what it can and queues the remaining dims; ``finish`` checks them once every
    pattern name (and every scalar parameter) is bound.
    """

    def __init__(self, env: dict, can_bind: Callable[[str], bool], owner: str = ""):
        self.env = env
        self.can_bind = can_bind
        self.owner = owner  # whose names these are, for messages: "Mlp", "the model"
        self._bound_by: dict[str, str] = {}  # name -> where match() bound it ("dim 1 of x")
        self._pending: list[tuple[str, ast.TensorTypeExpr, TensorType, int, Optional[Span]]] = []

    def match(self, prefix: str, decl: ast.TensorTypeExpr, actual: TensorType, span: Optional[Span],
              source: str = "") -> None:
        """``prefix`` starts the message ('MLP expects x: '); ``span`` locates a mismatch; ``source``
        names the value in messages ('x', 'the result')."""
        check_dtype(decl)
        if decl.dtype != actual.dtype:
            raise NndslTypeError(f"{prefix}{type_text(decl)}, got {actual}", span,
                                 f"the dtypes differ ({decl.dtype} vs {actual.dtype})")
        if len(decl.dims) != actual.rank:
            raise NndslShapeError(f"{prefix}{type_text(decl)} (rank {len(decl.dims)}), "
                                  f"got {actual} (rank {actual.rank})", span)
        for i, d in enumerate(decl.dims):
            if isinstance(d, ast.Name) and d.id not in self.env and self.can_bind(d.id):
                self.env[d.id] = actual.shape[i]
                self._bound_by[d.id] = f"dim {i} of {source}" if source else ""
            else:
                self._pending.append((prefix, decl, actual, i, span))

    def finish(self) -> None:
        pending, self._pending = self._pending, []
        for prefix, decl, actual, i, span in pending:
            d = decl.dims[i]
            want = to_dim(eval_scalar(d, self.env, dim=True), d.span)
            if not D.equal(want, actual.shape[i]):
                raise NndslShapeError(
                    f"{prefix}{type_text(decl)}{self._bindings(d)}, got {actual}", span,
                    f"expected dim {i} to be {self._expected(d, want)}, got {D.dim_str(actual.shape[i])}")

    def _expected(self, d: Any, want: Any) -> str:
        """What a dim should be, in words: '784', '784 (the model's `D`)', '2 * D = 32'."""
        value = show(want)
        if not isinstance(d, ast.Name):
            text = unparse(d)
            return value if text == value else f"{text} = {value}"
        if value == d.id:  # a symbolic dim (the batch size B): its name says it all
            return value
        bound = self._bound_by.get(d.id)
        if bound:
            return f"{value} (`{d.id}`, from {bound})"
        owner = f"{self.owner}'s " if self.owner else ""
        return f"{value} ({owner}`{d.id}`)"

    def _bindings(self, d: Any) -> str:
        parts = [f"{n} = {show(self.env[n])}" for n in names_in(d)
                 if n in self.env and show(self.env[n]) != n]
        return f" with {', '.join(parts)}" if parts else ""
